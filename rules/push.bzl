"""Public API: pushing to registries."""

load("//rules/private:push.bzl", _KilnPushInfo = "KilnPushInfo", _image_push = "image_push", _image_release = "image_release")

image_push = _image_push
image_release = _image_release
KilnPushInfo = _KilnPushInfo

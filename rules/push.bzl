"""Public API: pushing to registries."""

load("//rules/private:push.bzl", _image_push = "image_push")

image_push = _image_push

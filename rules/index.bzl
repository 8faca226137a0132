"""Public API: multi-platform image indexes."""

load("//rules/private:index.bzl", _image_index = "image_index")

image_index = _image_index

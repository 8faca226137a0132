"""Public API: image_test."""

load("//rules/private:test.bzl", _image_test = "image_test")

image_test = _image_test

"""Public API: loading into Docker or podman."""

load("//rules/private:load.bzl", _image_load = "image_load")

image_load = _image_load

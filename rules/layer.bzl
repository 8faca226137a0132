"""Public API: layers."""

load("//rules/private:layer.bzl", _container_layer = "container_layer")

container_layer = _container_layer

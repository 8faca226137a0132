"""Public API: the service_image macro."""

load("//rules/private:service.bzl", _service_image = "service_image")
load("//rules/private:transitions.bzl", _platform_binary = "platform_binary")

service_image = _service_image
platform_binary = _platform_binary

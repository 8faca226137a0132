"""Public API: base images built from Debian packages."""

load("//rules/private:base.bzl", _static_base = "static_base")

static_base = _static_base

"""The monorepo's service_image: rules_kiln's, with what every service here shares.

Every service is a static Go binary at `/<name>` on `//build/base` (the
static_base), listening on 8080 as nonroot, pushed to
`127.0.0.1:5000/kiln/<name>` unless `bazel run :push -- --repository` says
otherwise, and loaded as `kiln/<name>:dev` (what dev/compose.yaml and
dev/Tiltfile run). Every service's targets are public: `//:release` pushes
them all.
"""

load("@rules_kiln//rules:defs.bzl", _service_image = "service_image")

def service_image(name, binary, **kwargs):
    """One service: per-arch binaries, layers and images, :image, :push and :load.

    Args:
      name: the service (the package's name, e.g. `api`).
      binary: its go_static_binary.
      **kwargs: more service_image attributes (env, labels, cmd, ...).
    """
    _service_image(
        name = name,
        binary = binary,
        base = kwargs.pop("base", "//build/base"),
        ports = kwargs.pop("ports", ["8080/tcp"]),
        repository = kwargs.pop("repository", "127.0.0.1:5000/kiln/" + name),
        local_tag = kwargs.pop("local_tag", "kiln/%s:dev" % name),
        # The monorepo's own aggregates (//:release, //dev:oci_load) use every service.
        visibility = kwargs.pop("visibility", ["//:__subpackages__"]),
        **kwargs
    )

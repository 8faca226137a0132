"""The monorepo's service_image: rules_kiln's, with what every service here shares.

Every service is a static Go binary at `/<name>` on `//build/base` (the
static_base), listening on 8080 as nonroot, pushed to
`127.0.0.1:5000/kiln/<name>` unless `bazel run :push -- --repository` says
otherwise, and loaded as `kiln/<name>:dev` (what dev/compose.yaml and
dev/Tiltfile run). Every service's targets are public: `//:release` pushes
them all. Every service has `:image_test` (`bazel test //...`): the shared
service_test.yaml and the service's own checks, for the host's image and
the arm64 one (under qemu-user on an x86_64 machine).
"""

load("@rules_kiln//rules:defs.bzl", "image_test", _service_image = "service_image")

def _service_test_config_impl(ctx):
    name = ctx.attr.service
    config = {
        "commandTests": [{
            "args": ["--version"],
            "command": "/" + name,
            "expectedOutput": ["^%s [0-9]+[.][0-9]+[.][0-9]+ [(]go[0-9.]+ linux/%s[)]\\n$" % (name, ctx.attr.arch)],
            "name": name + " --version",
        }],
        "fileExistenceTests": [{
            "gid": 0,
            "isExecutableBy": "any",
            "name": "the service binary",
            "path": "/" + name,
            "permissions": "-rwxr-xr-x",
            "uid": 0,
        }],
        "metadataTest": {
            "entrypoint": ["/" + name],
            "exposedPorts": ["8080/tcp"],
        },
        "schemaVersion": "2.0.0",
    }
    out = ctx.actions.declare_file(ctx.label.name + ".json")
    ctx.actions.write(out, json.encode_indent(config) + "\n")
    return [DefaultInfo(files = depset([out]))]

_service_test_config = rule(
    implementation = _service_test_config_impl,
    doc = "The structure test config of one service's own image: its binary and `--version`.",
    attrs = {
        "arch": attr.string(doc = "The architecture the tested image is for.", mandatory = True),
        "service": attr.string(doc = "The service name (its binary is `/<service>`).", mandatory = True),
    },
)

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
    for arch in ["amd64", "arm64"]:
        _service_test_config(
            name = "image_test_%s_config" % arch,
            service = name,
            arch = arch,
        )
        image_test(
            name = "image_test_" + arch,
            image = ":image",
            platform = "linux/" + arch,
            configs = [
                "//build/util:service_test.yaml",
                ":image_test_%s_config" % arch,
            ],
        )
    native.test_suite(
        name = "image_test",
        tests = [":image_test_amd64", ":image_test_arm64"],
    )

"""Static Go binaries with the host's Go (Debian golang-go), one per target platform.

This is the example monorepo's stand-in for rules_go's go_binary(pure = "on"):
GOARCH comes from the target platform's CPU constraint, so a platform
transition (service_image does one per architecture) yields per-arch binaries.
"""

def _host_go_repo_impl(rctx):
    go = rctx.which("go")
    if not go:
        fail("host_go: no `go` on PATH; install Debian's golang-go")
    goroot = rctx.execute([go, "env", "GOROOT"])
    version = rctx.execute([go, "env", "GOVERSION"])
    if goroot.return_code != 0 or version.return_code != 0:
        fail("host_go: `go env` failed: %s%s" % (goroot.stderr, version.stderr))
    goroot = goroot.stdout.strip()
    rctx.file("BUILD.bazel", """
package(default_visibility = ["//visibility:public"])
exports_files(["go", "VERSION"])
""")
    rctx.symlink(goroot + "/bin/go", "go")

    # Part of every compile action's inputs, so a Go upgrade rebuilds binaries.
    rctx.file("VERSION", version.stdout.strip() + "\n" + goroot + "\n")

_host_go_repo = repository_rule(
    implementation = _host_go_repo_impl,
    environ = ["PATH"],
)

host_go = module_extension(
    implementation = lambda mctx: _host_go_repo(name = "host_go"),
)

_GOARCH = {
    "aarch64": "arm64",
    "x86_64": "amd64",
}

def _go_static_binary_impl(ctx):
    goarch = None
    for cpu, arch in _GOARCH.items():
        if ctx.target_platform_has_constraint(getattr(ctx.attr, "_cpu_" + cpu)[platform_common.ConstraintValueInfo]):
            goarch = arch
    if not goarch:
        fail("%s: target platform has no CPU this rule knows (x86_64, aarch64)" % ctx.label)
    out = ctx.actions.declare_file(ctx.label.name)
    ctx.actions.run_shell(
        inputs = ctx.files.srcs + [ctx.file._go, ctx.file._version],
        outputs = [out],
        command = """
set -eu
export HOME="$PWD/_gohome" GOCACHE="$PWD/_gocache" GOPATH="$PWD/_gopath"
"$1" build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$2" "${@:3}"
""",
        arguments = [ctx.file._go.path, out.path] + [f.path for f in ctx.files.srcs],
        env = {
            "CGO_ENABLED": "0",
            "GO111MODULE": "off",
            "GOARCH": goarch,
            "GOFLAGS": "",
            "GOOS": "linux",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "PATH": "/usr/bin:/bin",
        },
        mnemonic = "GoStaticBinary",
        progress_message = "Compiling %%{label} for linux/%s" % goarch,
    )
    return [DefaultInfo(files = depset([out]), executable = out)]

go_static_binary = rule(
    implementation = _go_static_binary_impl,
    doc = "A static (CGO_ENABLED=0) Go binary for the target platform's architecture.",
    attrs = {
        "srcs": attr.label_list(allow_files = [".go"], mandatory = True, doc = "Go files of package main."),
        "_cpu_aarch64": attr.label(default = "@platforms//cpu:aarch64"),
        "_cpu_x86_64": attr.label(default = "@platforms//cpu:x86_64"),
        "_go": attr.label(default = "@host_go//:go", allow_single_file = True),
        "_version": attr.label(default = "@host_go//:VERSION", allow_single_file = True),
    },
    executable = True,
)

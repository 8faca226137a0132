"""Static Go binaries with the host's Go (Debian golang-go), one per target platform.

This is the example monorepo's stand-in for rules_go's go_binary(pure = "on"),
which is not available offline: GOARCH comes from the target platform's CPU
constraint, so a platform transition (service_image does one per
architecture) yields per-arch binaries. Libraries (`go_library`) are source
sets laid out in a GOPATH inside the binary's action, compiled with it: one
action per binary and architecture, and a library change rebuilds exactly
the binaries that import it. Only the standard library is available (no
network for Go modules).
"""

GoLibraryInfo = provider(
    doc = "A Go package: its import path and sources, with those of its deps.",
    fields = {
        "packages": "depset of struct(importpath, srcs): this package and its deps.",
    },
)

def _go_library_impl(ctx):
    pkg = struct(importpath = ctx.attr.importpath, srcs = tuple(ctx.files.srcs))
    return [GoLibraryInfo(packages = depset([pkg], transitive = [d[GoLibraryInfo].packages for d in ctx.attr.deps]))]

go_library = rule(
    implementation = _go_library_impl,
    doc = "A Go package that go_static_binary targets import by `importpath`.",
    attrs = {
        "deps": attr.label_list(providers = [GoLibraryInfo], doc = "Packages this one imports."),
        "importpath": attr.string(mandatory = True, doc = "The import path, e.g. `kiln.example/build/util`."),
        "srcs": attr.label_list(allow_files = [".go"], mandatory = True, doc = "Go files of the package."),
    },
)

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

# Go's build cache, shared by every compile on the machine. Go compiles the
# standard library into its cache (Go >= 1.20 ships none), which a fresh
# cache per action would redo for every binary: minutes instead of seconds.
# The cache is content-addressed and safe for concurrent use, so it changes
# how fast a binary builds, never its bytes; the path is fixed so that the
# action (and its remote-cache key) is the same on every machine.
_GOCACHE = "/tmp/kiln-examples-gocache"

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
    packages = depset(transitive = [d[GoLibraryInfo].packages for d in ctx.attr.deps]).to_list()

    # Each library is copied to $GOPATH/src/<importpath>/ (GOPATH mode: no
    # go.mod, no module downloads).
    layout = []
    lib_srcs = []
    for pkg in packages:
        for f in pkg.srcs:
            layout += ["--lib", pkg.importpath, f.path]
            lib_srcs.append(f)
    ctx.actions.run_shell(
        inputs = ctx.files.srcs + lib_srcs + [ctx.file._go, ctx.file._version],
        outputs = [out],
        command = """
set -eu
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-go.XXXXXX")
trap 'rm -rf "$work"' EXIT
export HOME="$work/home" GOPATH="$work/gopath"
go=$PWD/$1 out=$PWD/$2; shift 2
while [ "${1:-}" = --lib ]; do
  mkdir -p "$GOPATH/src/$2" && cp "$3" "$GOPATH/src/$2/"; shift 3
done
"$go" build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out" "$@"
""",
        arguments = [ctx.file._go.path, out.path] + layout + [f.path for f in ctx.files.srcs],
        env = {
            "CGO_ENABLED": "0",
            "GO111MODULE": "off",
            "GOARCH": goarch,
            "GOCACHE": _GOCACHE,
            "GOFLAGS": "",
            "GOOS": "linux",
            "GOPROXY": "off",
            "GOTOOLCHAIN": "local",
            "PATH": "/usr/bin:/bin",
        },
        mnemonic = "GoStaticBinary",
        # Outside the sandbox, so that the shared cache is the machine's own.
        execution_requirements = {"no-sandbox": "1"},
        progress_message = "Compiling %%{label} for linux/%s" % goarch,
    )
    return [DefaultInfo(files = depset([out]), executable = out)]

go_static_binary = rule(
    implementation = _go_static_binary_impl,
    doc = "A static (CGO_ENABLED=0) Go binary for the target platform's architecture.",
    attrs = {
        "deps": attr.label_list(providers = [GoLibraryInfo], doc = "go_library packages the binary imports."),
        "srcs": attr.label_list(allow_files = [".go"], mandatory = True, doc = "Go files of package main."),
        "_cpu_aarch64": attr.label(default = "@platforms//cpu:aarch64"),
        "_cpu_x86_64": attr.label(default = "@platforms//cpu:x86_64"),
        "_go": attr.label(default = "@host_go//:go", allow_single_file = True),
        "_version": attr.label(default = "@host_go//:VERSION", allow_single_file = True),
    },
    executable = True,
)

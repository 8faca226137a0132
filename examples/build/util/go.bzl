"""Static Go binaries from a pinned Go SDK, one per target platform.

This is the example monorepo's stand-in for rules_go's go_binary(pure = "on"),
which is not available offline. The SDK is a Go toolchain
(`//build/util:go_toolchain_type`): `@go_sdk` materialises a complete GOROOT
from Debian's golang-X-go and golang-X-src, pinned by sha256 in
build/util/go_sdk.lock.json, and every file of it the build reads is a
declared input of the Go actions, so they run as well on a remote executor
as here. GOARCH comes from the target platform's CPU constraint, so a
platform transition (service_image does one per architecture) yields
per-arch binaries. Libraries (`go_library`) are source sets laid out in a
GOPATH inside the binary's action, compiled with it: one action per binary
and architecture, and a library change rebuilds exactly the binaries that
import it. Only the standard library is available (no network for Go
modules).
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

def _go_sdk_repo_impl(rctx):
    where = "go_sdk %s" % rctx.attr.lock
    lock = json.decode(rctx.read(rctx.attr.lock))
    packages = {p["name"]: p for p in lock.get("packages", [])}
    go_pkgs = [n for n in packages if n.endswith("-go")]
    src_pkgs = [n for n in packages if n.endswith("-src")]
    if len(go_pkgs) != 1 or len(src_pkgs) != 1:
        fail("%s: expected one golang-X-go and one golang-X-src package, got %s" % (where, sorted(packages)))
    for name in go_pkgs + src_pkgs:
        pkg = packages[name]
        deb = "debs/%s.deb" % name
        rctx.report_progress("fetching %s %s" % (name, pkg["version"]))
        result = rctx.download(url = pkg["urls"], output = deb, sha256 = pkg["sha256"], allow_fail = True)
        if not result.success:
            fail("%s: package %s %s: cannot download %s with sha256 %s" % (where, name, pkg["version"], pkg["urls"], pkg["sha256"]))
        rctx.extract(deb, output = "debs/" + name)
        data = [f for f in rctx.path("debs/" + name).readdir() if f.basename.startswith("data.tar")]
        if len(data) != 1:
            fail("%s: package %s: no data.tar member" % (where, name))
        rctx.extract(data[0], output = "root")
        rctx.delete("debs/" + name)
        rctx.delete(deb)

    # Debian splits GOROOT: /usr/lib/go-X (bin, pkg/tool) links its src, api,
    # lib, misc, test and pkg/include to /usr/share/go-X. Join them into one
    # plain tree, so that every file of GOROOT is a declared file here.
    series = go_pkgs[0][len("golang-"):-len("-go")]
    assembled = rctx.execute(["sh", "-c", """
set -eu
lib=root/usr/lib/go-$1 share=root/usr/share/go-$1
for link in api lib misc src test pkg/include; do
    if [ -L "$lib/$link" ]; then rm "$lib/$link"; fi
    if [ -e "$share/$link" ]; then mv "$share/$link" "$lib/$link"; fi
done
mv "$lib" goroot
rm -rf root
""", "sh", series])
    if assembled.return_code != 0:
        fail("%s: cannot assemble GOROOT: %s" % (where, assembled.stderr))
    if not rctx.path("goroot/bin/go").exists or not rctx.path("goroot/src/runtime").exists:
        fail("%s: the packages hold no goroot/bin/go and goroot/src/runtime" % where)
    rctx.file("BUILD.bazel", """
load("@//build/util:go.bzl", "go_sdk")
package(default_visibility = ["//visibility:public"])

# What `go build` of the standard library and a main package reads: not the
# tests, their data, or the sources of the go command itself.
go_sdk(
    name = "sdk",
    go = "goroot/bin/go",
    srcs = glob(
        ["goroot/**"],
        exclude = [
            "goroot/**/testdata/**",
            "goroot/**/*_test.go",
            "goroot/src/cmd/**",
            "goroot/test/**",
            "goroot/misc/**",
            "goroot/api/**",
        ],
    ),
    version = "{version}",
)
""".format(version = packages[go_pkgs[0]]["version"]))

_go_sdk_repo = repository_rule(
    implementation = _go_sdk_repo_impl,
    doc = "A complete GOROOT from Debian's golang-X-go and golang-X-src, pinned by sha256 in a lock.",
    attrs = {"lock": attr.label(mandatory = True, allow_single_file = [".json"])},
)

def _go_sdk_extension_impl(mctx):
    _go_sdk_repo(name = "go_sdk", lock = "//build/util:go_sdk.lock.json")

    # Pinned by sha256 in the lock: a lockfile need not record it.
    return mctx.extension_metadata(reproducible = True)

go_sdk_extension = module_extension(
    implementation = _go_sdk_extension_impl,
    doc = "`@go_sdk`: the Go SDK of build/util/go_sdk.lock.json.",
)

GoSdkInfo = provider(
    doc = "A Go SDK: the go binary and every file of its GOROOT.",
    fields = {
        "files": "depset of the GOROOT's files (the action's inputs).",
        "go": "File: goroot/bin/go.",
        "goroot": "The GOROOT directory's path relative to the exec root.",
        "version": "The Debian package version.",
    },
)

def _go_sdk_impl(ctx):
    go = ctx.file.go
    goroot = go.dirname.rsplit("/", 1)[0]
    return [GoSdkInfo(
        files = depset([go] + ctx.files.srcs),
        go = go,
        goroot = goroot,
        version = ctx.attr.version,
    )]

go_sdk = rule(
    implementation = _go_sdk_impl,
    doc = "The files of a GOROOT, as GoSdkInfo.",
    attrs = {
        "go": attr.label(mandatory = True, allow_single_file = True, doc = "goroot/bin/go."),
        "srcs": attr.label_list(allow_files = True, doc = "Every file of the GOROOT the build reads."),
        "version": attr.string(doc = "The Debian package version."),
    },
    provides = [GoSdkInfo],
)

def _go_toolchain_impl(ctx):
    return [platform_common.ToolchainInfo(sdk = ctx.attr.sdk[GoSdkInfo])]

go_toolchain = rule(
    implementation = _go_toolchain_impl,
    doc = "A Go toolchain: an SDK that runs on the toolchain's exec platform and cross-compiles (CGO_ENABLED=0) for any GOARCH.",
    attrs = {"sdk": attr.label(mandatory = True, providers = [GoSdkInfo], cfg = "exec", doc = "The go_sdk.")},
)

_GO_TOOLCHAIN_TYPE = "//build/util:go_toolchain_type"

_GOARCH = {
    "aarch64": "arm64",
    "x86_64": "amd64",
}

def _goarch(ctx):
    for cpu, arch in _GOARCH.items():
        if ctx.target_platform_has_constraint(getattr(ctx.attr, "_cpu_" + cpu)[platform_common.ConstraintValueInfo]):
            return arch
    fail("%s: target platform has no CPU this rule knows (x86_64, aarch64)" % ctx.label)

# The environment of every Go action: everything go reads is set here or
# derived inside the action from its working directory ($GOROOT, $GOCACHE,
# $HOME and $GOPATH are set by the command), never taken from the machine.
def _go_env(goarch):
    return {
        "CGO_ENABLED": "0",
        "GO111MODULE": "off",
        "GOARCH": goarch,
        "GOFLAGS": "",
        "GOOS": "linux",
        "GOPROXY": "off",
        "GOTOOLCHAIN": "local",
        "GOENV": "off",
        "PATH": "/usr/bin:/bin",
    }

# Sets up an action's private Go environment below the output's directory
# (`$1`: the output path, relative to the exec root; `$2`: GOROOT).
_GO_PRELUDE = """
set -eu
out=$PWD/$1
GOROOT=$PWD/$2
shift 2
work="$out.work"
rm -rf "$work" && mkdir -p "$work/home" "$work/tmp" "$work/gopath"
trap 'rm -rf "$work"' EXIT
export GOROOT HOME="$work/home" GOPATH="$work/gopath" GOTMPDIR="$work/tmp" TMPDIR="$work/tmp" GOCACHE="$work/gocache"
"""

def _go_stdlib_impl(ctx):
    sdk = ctx.toolchains[_GO_TOOLCHAIN_TYPE].sdk
    goarch = _goarch(ctx)
    cache = ctx.actions.declare_directory(ctx.label.name + "_" + goarch + ".gocache")
    ctx.actions.run_shell(
        inputs = sdk.files,
        outputs = [cache],
        command = _GO_PRELUDE + """
"$GOROOT/bin/go" build -trimpath "$@"
mkdir -p "$out" && cp -R "$GOCACHE/." "$out/"
""",
        arguments = [cache.path, sdk.goroot] + ctx.attr.packages,
        env = _go_env(goarch),
        mnemonic = "GoStdlib",
        progress_message = "Compiling the Go standard library for linux/%s" % goarch,
    )
    return [DefaultInfo(files = depset([cache]))]

go_stdlib = rule(
    implementation = _go_stdlib_impl,
    doc = """Go's build cache holding the standard library packages `packages` import, compiled for the target platform.

Go >= 1.20 ships no compiled standard library: every build compiles the
part it imports into its cache. This action does it once per architecture;
each go_static_binary starts from a copy of it. The cache only changes how
fast a binary builds, never its bytes; a package missing here is compiled by
the binary's own action.""",
    attrs = {
        "packages": attr.string_list(mandatory = True, doc = "Standard library packages to compile, with their deps."),
        "_cpu_aarch64": attr.label(default = "@platforms//cpu:aarch64"),
        "_cpu_x86_64": attr.label(default = "@platforms//cpu:x86_64"),
    },
    toolchains = [_GO_TOOLCHAIN_TYPE],
)

def _go_static_binary_impl(ctx):
    sdk = ctx.toolchains[_GO_TOOLCHAIN_TYPE].sdk
    goarch = _goarch(ctx)
    out = ctx.actions.declare_file(ctx.label.name)
    packages = depset(transitive = [d[GoLibraryInfo].packages for d in ctx.attr.deps]).to_list()
    stdlib = ctx.file._stdlib

    # Each library is copied to $GOPATH/src/<importpath>/ (GOPATH mode: no
    # go.mod, no module downloads).
    layout = []
    lib_srcs = []
    for pkg in packages:
        for f in pkg.srcs:
            layout += ["--lib", pkg.importpath, f.path]
            lib_srcs.append(f)
    ctx.actions.run_shell(
        inputs = depset(ctx.files.srcs + lib_srcs + [stdlib], transitive = [sdk.files]),
        outputs = [out],
        command = _GO_PRELUDE + """
# A copy (dereferenced: sandboxes link inputs) that go may write to.
cp -RL "$1" "$GOCACHE" && chmod -R u+w "$GOCACHE"
shift
while [ "${1:-}" = --lib ]; do
  mkdir -p "$GOPATH/src/$2" && cp "$3" "$GOPATH/src/$2/"; shift 3
done
"$GOROOT/bin/go" build -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out" "$@"
""",
        arguments = [out.path, sdk.goroot, stdlib.path] + layout + [f.path for f in ctx.files.srcs],
        env = _go_env(goarch),
        mnemonic = "GoStaticBinary",
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
        "_stdlib": attr.label(default = "//build/util:stdlib", allow_single_file = True),
    },
    executable = True,
    toolchains = [_GO_TOOLCHAIN_TYPE],
)

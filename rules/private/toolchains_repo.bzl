"""Repository rule that provides the kiln tool binaries in one of three modes.

source:   `cargo build --release --locked` of this module's own Cargo workspace.
prebuilt: one archive of binaries per platform, by URL and sha256.
local:    a directory that already holds the binaries.
"""

load(":toolchain.bzl", "TOOL_NAMES")

# Platform key -> constraints of the machine that runs the binary.
PLATFORM_CONSTRAINTS = {
    "linux_aarch64": ["@platforms//os:linux", "@platforms//cpu:aarch64"],
    "linux_x86_64": ["@platforms//os:linux", "@platforms//cpu:x86_64"],
}

def host_platform_key(rctx):
    """Platform key of the machine running Bazel, e.g. `linux_x86_64`.

    Args:
      rctx: repository context.

    Returns:
      The key, a key of PLATFORM_CONSTRAINTS.
    """
    os = rctx.os.name.lower()
    arch = rctx.os.arch
    if arch == "amd64":
        arch = "x86_64"
    if arch == "arm64":
        arch = "aarch64"
    if not os.startswith("linux"):
        fail("rules_kiln: toolchains: host OS %r is not supported yet (linux only)" % os)
    key = "linux_" + arch
    if key not in PLATFORM_CONSTRAINTS:
        fail("rules_kiln: toolchains: host architecture %r is not supported (supported: %s)" % (arch, ", ".join(PLATFORM_CONSTRAINTS)))
    return key

def _find_cargo(rctx):
    cargo = rctx.which("cargo")
    if cargo:
        return cargo
    home = rctx.getenv("HOME", "")
    if home:
        candidate = rctx.path(home + "/.cargo/bin/cargo")
        if candidate.exists:
            return candidate
    fail("rules_kiln: toolchains: mode \"source\" needs `cargo` on PATH or in $HOME/.cargo/bin")

def _build_from_source(rctx, key):
    cargo_toml = rctx.path(rctx.attr.cargo_toml)
    workspace = cargo_toml.dirname

    # Build from the real source path, not the output base's external/ link:
    # cargo fingerprints paths, so output bases that share a target directory
    # (KILN_CARGO_TARGET_DIR) would otherwise rebuild our crates every time.
    real = rctx.execute(["realpath", str(cargo_toml)])
    if real.return_code == 0 and real.stdout.strip():
        cargo_toml = rctx.path(real.stdout.strip())

    # Re-run when the Rust sources change, so tools never go stale.
    rctx.watch(cargo_toml)
    rctx.watch(rctx.path(rctx.attr.cargo_lock))
    rctx.watch_tree(workspace.get_child("tools"))

    # A shared target directory lets test suites that use many fresh output
    # bases compile the tools once; cargo's own fingerprints keep it correct.
    target_dir = rctx.getenv("KILN_CARGO_TARGET_DIR", "") or str(rctx.path("cargo-target"))
    rctx.report_progress("cargo build --release --locked (rules_kiln tools)")
    result = rctx.execute(
        [_find_cargo(rctx), "build", "--release", "--locked", "--manifest-path", str(cargo_toml)] +
        ["--bin=kiln-" + t for t in TOOL_NAMES],
        environment = {"CARGO_TARGET_DIR": target_dir},
        timeout = 3600,
        quiet = False,
    )
    if result.return_code != 0:
        fail("rules_kiln: toolchains: `cargo build --release --locked` in %s failed (exit %d):\n%s" % (workspace, result.return_code, result.stderr))
    for t in TOOL_NAMES:
        # A copy, not a symlink: the shared target directory changes under us.
        src = "%s/release/kiln-%s" % (target_dir, t)
        dst = "bin/%s/kiln-%s" % (key, t)
        rctx.execute(["mkdir", "-p", "bin/" + key])
        copied = rctx.execute(["cp", src, dst])
        if copied.return_code != 0:
            fail("rules_kiln: toolchains: cannot copy %s: %s" % (src, copied.stderr))
    return [key]

def _download_prebuilt(rctx):
    if not rctx.attr.urls:
        fail("rules_kiln: toolchains: mode \"prebuilt\" needs `urls` (platform -> URL of an archive of the kiln-* binaries)")
    keys = []
    for key, url in sorted(rctx.attr.urls.items()):
        if key not in PLATFORM_CONSTRAINTS:
            fail("rules_kiln: toolchains: urls: unknown platform %r (known: %s)" % (key, ", ".join(PLATFORM_CONSTRAINTS)))
        sha256 = rctx.attr.sha256.get(key, "")
        if not sha256:
            fail("rules_kiln: toolchains: sha256: no checksum for platform %r (%s); prebuilt binaries are only used when pinned" % (key, url))
        rctx.download_and_extract(url = url, sha256 = sha256, output = "bin/" + key)
        keys.append(key)
    return keys

def _link_local(rctx, key):
    if not rctx.attr.path:
        fail("rules_kiln: toolchains: mode \"local\" needs `path` (a directory holding the kiln-* binaries)")
    directory = rctx.path(rctx.attr.path)
    for t in TOOL_NAMES:
        binary = directory.get_child("kiln-" + t)
        if not binary.exists:
            fail("rules_kiln: toolchains: path: %s has no kiln-%s" % (directory, t))
        rctx.watch(binary)
        rctx.symlink(binary, "bin/%s/kiln-%s" % (key, t))
    return [key]

def _kiln_toolchains_repo_impl(rctx):
    mode = rctx.attr.mode
    host = host_platform_key(rctx)
    if mode == "source":
        keys = _build_from_source(rctx, host)
    elif mode == "prebuilt":
        keys = _download_prebuilt(rctx)
    else:
        keys = _link_local(rctx, host)

    for key in keys:
        for t in TOOL_NAMES:
            if not rctx.path("bin/%s/kiln-%s" % (key, t)).exists:
                fail("rules_kiln: toolchains: %s mode gave no kiln-%s for %s" % (mode, t, key))

    build = [
        'load("@rules_kiln//rules/private:toolchain.bzl", "kiln_tool_toolchain")',
        'package(default_visibility = ["//visibility:public"])',
        "",
    ]
    for key in keys:
        for t in TOOL_NAMES:
            build.append("""
kiln_tool_toolchain(
    name = "{t}_{key}_impl",
    tool = "bin/{key}/kiln-{t}",
    tool_name = "{t}",
)

toolchain(
    name = "{t}_{key}",
    exec_compatible_with = {constraints},
    toolchain = ":{t}_{key}_impl",
    toolchain_type = "@rules_kiln//rules/toolchains:{t}_toolchain_type",
)
""".format(t = t, key = key, constraints = repr(PLATFORM_CONSTRAINTS[key])))
        build.append('exports_files(glob(["bin/%s/*"]))' % key)
    rctx.file("BUILD.bazel", "\n".join(build) + "\n")
    rctx.file("mode.txt", mode + "\n")

kiln_toolchains_repo = repository_rule(
    implementation = _kiln_toolchains_repo_impl,
    doc = "Provides the kiln-* tool binaries and one toolchain per tool and platform.",
    attrs = {
        "cargo_lock": attr.label(default = Label("//:Cargo.lock"), allow_single_file = True),
        "cargo_toml": attr.label(default = Label("//:Cargo.toml"), allow_single_file = True),
        "mode": attr.string(default = "source", values = ["source", "prebuilt", "local"]),
        "path": attr.string(doc = "local mode: absolute path of a directory with the kiln-* binaries."),
        "sha256": attr.string_dict(doc = "prebuilt mode: platform key -> sha256 of the archive."),
        "urls": attr.string_dict(doc = "prebuilt mode: platform key (linux_x86_64, linux_aarch64) -> archive URL."),
    },
    environ = ["KILN_CARGO_TARGET_DIR"],
)

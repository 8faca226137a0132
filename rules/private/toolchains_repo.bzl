"""Repository rules that provide the kiln tool binaries and their toolchains.

`kiln_tools_repo`: the kiln-* binaries of one platform (`@kiln_tools_<key>`):
  source:      `cargo build --release --locked` of this module's own Cargo workspace;
  prebuilt:    one archive of binaries, by URL and sha256 (rctx.download, so
               --repository_cache, --distdir and --downloader_config apply);
  local:       a directory that already holds the binaries;
  unavailable: fails, saying why, if a build ever needs it.
`kiln_toolchains_hub`: `@kiln_toolchains`, one toolchain per tool and platform
(constrained by exec platform) and `run_<tool>` aliases to the host's binaries
for what `bazel run` executes. A platform's repository is only fetched when
toolchain resolution picks it.
"""

load(":generated.bzl", "BUILD_ARCHITECTURES")
load(":toolchain.bzl", "TOOL_NAMES")

# Platform key -> constraints of the machine that runs the binary.
PLATFORM_CONSTRAINTS = {
    "linux_" + a["bazel_cpu"]: ["@platforms//os:linux", "@platforms//cpu:" + a["bazel_cpu"]]
    for a in BUILD_ARCHITECTURES.values()
}

def host_platform_key(rctx):
    """Platform key of the machine running Bazel, e.g. `linux_x86_64`.

    Args:
      rctx: repository or module context.

    Returns:
      The key, a key of PLATFORM_CONSTRAINTS.
    """
    os = rctx.os.name.lower()
    arch = rctx.os.arch

    # The JVM says amd64 and may say arm64 where uname says x86_64, aarch64.
    if arch in BUILD_ARCHITECTURES:
        arch = BUILD_ARCHITECTURES[arch]["bazel_cpu"]
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

def _build_from_source(rctx):
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
        # Quiet: Bazel's progress line says what runs; cargo's errors are in the failure.
        quiet = True,
    )
    if result.return_code != 0:
        fail("rules_kiln: toolchains: `cargo build --release --locked` in %s failed (exit %d):\n%s" % (workspace, result.return_code, result.stderr))
    rctx.execute(["mkdir", "-p", "bin"])
    for t in TOOL_NAMES:
        # A copy, not a symlink: the shared target directory changes under us.
        src = "%s/release/kiln-%s" % (target_dir, t)
        copied = rctx.execute(["cp", src, "bin/kiln-" + t])
        if copied.return_code != 0:
            fail("rules_kiln: toolchains: cannot copy %s: %s" % (src, copied.stderr))

def _download_prebuilt(rctx):
    key, url, sha256 = rctx.attr.platform, rctx.attr.url, rctx.attr.sha256
    if not sha256:
        fail("rules_kiln: toolchains: sha256: no checksum for platform %r (%s); prebuilt binaries are only used when pinned" % (key, url))
    rctx.report_progress("downloading kiln tools for %s" % key)
    result = rctx.download(url = url, output = "tools.tar.gz", sha256 = sha256, allow_fail = True)
    if not result.success:
        fail("rules_kiln: toolchains: prebuilt tools for platform %s: %s does not have sha256 %s (%s), or cannot be downloaded" % (
            key,
            url,
            sha256,
            rctx.attr.pinned_in,
        ))
    rctx.extract("tools.tar.gz", output = "bin")
    rctx.delete("tools.tar.gz")

def _link_local(rctx):
    if not rctx.attr.path:
        fail("rules_kiln: toolchains: mode \"local\" needs `path` (a directory holding the kiln-* binaries)")
    directory = rctx.path(rctx.attr.path)
    for t in TOOL_NAMES:
        binary = directory.get_child("kiln-" + t)
        if not binary.exists:
            fail("rules_kiln: toolchains: path: %s has no kiln-%s" % (directory, t))
        rctx.watch(binary)
        rctx.symlink(binary, "bin/kiln-" + t)

def _kiln_tools_repo_impl(rctx):
    mode = rctx.attr.mode
    if mode == "unavailable":
        fail("rules_kiln: toolchains: no kiln tools for platform %s: %s" % (rctx.attr.platform, rctx.attr.reason))
    if mode == "source":
        _build_from_source(rctx)
    elif mode == "prebuilt":
        _download_prebuilt(rctx)
    else:
        _link_local(rctx)
    for t in TOOL_NAMES:
        if not rctx.path("bin/kiln-" + t).exists:
            fail("rules_kiln: toolchains: %s mode gave no kiln-%s for %s" % (mode, t, rctx.attr.platform))

    build = [
        'load("@rules_kiln//rules/private:toolchain.bzl", "kiln_tool_toolchain")',
        'package(default_visibility = ["//visibility:public"])',
        "",
        'exports_files(glob(["bin/*"]))',
    ]
    for t in TOOL_NAMES:
        build.append("""
kiln_tool_toolchain(
    name = "{t}",
    tool = "bin/kiln-{t}",
    tool_name = "{t}",
)
""".format(t = t))
    rctx.file("BUILD.bazel", "\n".join(build) + "\n")
    rctx.file("mode.txt", mode + "\n")

kiln_tools_repo = repository_rule(
    implementation = _kiln_tools_repo_impl,
    doc = "The kiln-* tool binaries of one platform.",
    attrs = {
        "cargo_lock": attr.label(default = Label("//:Cargo.lock"), allow_single_file = True),
        "cargo_toml": attr.label(default = Label("//:Cargo.toml"), allow_single_file = True),
        "mode": attr.string(default = "source", values = ["source", "prebuilt", "local", "unavailable"]),
        "path": attr.string(doc = "local mode: absolute path of a directory with the kiln-* binaries."),
        "pinned_in": attr.string(doc = "prebuilt mode: where url and sha256 come from, for messages."),
        "platform": attr.string(doc = "Platform key (linux_x86_64, linux_aarch64).", mandatory = True),
        "reason": attr.string(doc = "unavailable mode: why there are no tools for this platform."),
        "sha256": attr.string(doc = "prebuilt mode: sha256 of the archive."),
        "url": attr.string(doc = "prebuilt mode: URL of a .tar.gz holding the kiln-* binaries at its top level."),
    },
    environ = ["KILN_CARGO_TARGET_DIR"],
)

def _kiln_toolchains_hub_impl(rctx):
    build = ['package(default_visibility = ["//visibility:public"])', ""]
    for key in rctx.attr.platforms:
        for t in TOOL_NAMES:
            build.append("""toolchain(
    name = "{t}_{key}",
    exec_compatible_with = {constraints},
    toolchain = "@kiln_tools_{key}//:{t}",
    toolchain_type = "@rules_kiln//rules/toolchains:{t}_toolchain_type",
)
""".format(t = t, key = key, constraints = repr(PLATFORM_CONSTRAINTS[key])))

    # What `bazel run` executes runs here, on the host, whatever the exec platform.
    for t in TOOL_NAMES:
        build.append('alias(\n    name = "run_%s",\n    actual = "@kiln_tools_%s//:bin/kiln-%s",\n)\n' % (t, rctx.attr.host, t))
    rctx.file("BUILD.bazel", "\n".join(build))
    rctx.file("mode.txt", rctx.attr.mode + "\n")

kiln_toolchains_hub = repository_rule(
    implementation = _kiln_toolchains_hub_impl,
    doc = "`@kiln_toolchains`: a toolchain per kiln tool and platform, and the host's tools for `bazel run`.",
    attrs = {
        "host": attr.string(doc = "Platform key of the machine running Bazel.", mandatory = True),
        "mode": attr.string(doc = "How the tools are provided (for tests and messages).", mandatory = True),
        "platforms": attr.string_list(doc = "Platform keys that have tools.", mandatory = True),
    },
)

"""Module extension `kiln`: how the kiln tools are provided.

In MODULE.bazel:

    kiln = use_extension("@rules_kiln//rules:extensions.bzl", "kiln")
    kiln.toolchains(mode = "prebuilt", urls = {...}, sha256 = {...})  # optional
    kiln.pull(name = "distroless_static", image = "gcr.io/distroless/static",
              digest = "sha256:...", platforms = ["linux/amd64", "linux/arm64/v8"])
    use_repo(kiln, "distroless_static")

The root module's `kiln.toolchains` tag wins; without one, mode `auto`
applies: a module that depends on a rules_kiln release gets the release's
prebuilt tools (pinned in its `kiln_tools.lock.json`), no cargo needed; a
checkout of rules_kiln builds them from source. The hub repository is always
`@kiln_toolchains` (one toolchain per tool and platform, constrained by exec
platform), each platform's binaries are `@kiln_tools_<platform>` (fetched
only when a build needs them), and rules_kiln registers the toolchains itself.
"""

load("//rules/private:debs.bzl", "kiln_debs_repo")
load("//rules/private:pull.bzl", "kiln_pull_repo")
load("//rules/private:toolchains_repo.bzl", "PLATFORM_CONSTRAINTS", "host_platform_key", "kiln_toolchains_hub", "kiln_tools_repo")

_toolchains_tag = tag_class(
    doc = "Chooses how the kiln-* tools are provided.",
    attrs = {
        "mode": attr.string(
            doc = "`auto` (the default: `prebuilt` from the lock of a rules_kiln release archive, `source` in a checkout of rules_kiln), `source` (cargo build of rules_kiln's own workspace, for the host), `prebuilt` (archives by URL + sha256, one per platform; toolchains constrained by exec platform) or `local` (a directory of binaries for the host).",
            default = "auto",
            values = ["auto", "source", "prebuilt", "local"],
        ),
        "path": attr.string(doc = "`local` mode: absolute path of a directory holding kiln-layer, kiln-image, kiln-index, kiln-push, kiln-load, kiln-pull and kiln-imagetest."),
        "sha256": attr.string_dict(doc = "`prebuilt` mode: platform key -> sha256 of its archive."),
        "urls": attr.string_dict(doc = "`prebuilt` mode: platform key (`linux_x86_64`, `linux_aarch64`) -> URL of a .tar.gz holding the kiln-* binaries at its top level. Default with `auto`: those of the release's lock."),
    },
)

_pull_tag = tag_class(
    doc = """A base image from a registry, pinned by digest, as repository `@<name>`.

The repository is shallow: the index, the manifests and configs of `platforms`
and `kiln-source.json`; layer bytes are fetched only where they are needed:
the `oci_layout` output group and `<name>.tar` of an image on it (the
KilnFetchBlobs action, tagged `requires-network` and `no-remote-exec`: it
downloads from the registry, which a remote executor cannot be assumed to
reach; every blob is checked against its digest, so its output is still
cacheable) and `bazel run` loaders; `image_push` mounts or copies them
registry to registry. The SBOMs of images on it (output group `sbom`,
`image_push`, `image_release`) list its Debian packages: per platform, one
KilnBasePackages action (also `requires-network`, `no-remote-exec`) streams
the layers through the dpkg status reader and keeps only a small JSON of the
packages. Use it as `base = "@<name>"`. Credentials come from
`$DOCKER_CONFIG/config.json` or `~/.docker/config.json` (auths, credHelpers,
credsStore, identity tokens); plain HTTP is used for localhost and 127.0.0.1.""",
    attrs = {
        "allow_tag": attr.bool(doc = "Pull by `tag` without a `digest` (prints a warning: not reproducible).", default = False),
        "digest": attr.string(doc = "`sha256:` digest of the image index or manifest. Required unless `allow_tag`."),
        "image": attr.string(doc = "`[HOST[:PORT]/]REPOSITORY`, e.g. `gcr.io/distroless/static` or `127.0.0.1:5000/kiln/base`.", mandatory = True),
        "name": attr.string(doc = "Name of the repository to create.", mandatory = True),
        "platforms": attr.string_list(doc = "Platforms to keep (`os/arch[/variant]`); arm64 matches arm64/v8.", default = ["linux/amd64", "linux/arm64"]),
        "tag": attr.string(doc = "Tag of the image (documentation next to `digest`, or the reference itself with `allow_tag`)."),
    },
)

_debs_tag = tag_class(
    doc = """Debian packages pinned by a lock file, as repository `@<name>`.

Each package in `lock` is pinned by name, version, architecture and sha256
(and the URLs it is fetched from). The repository fetches every .deb through
Bazel's downloader (so `--repository_cache`, `--distdir` and
`--downloader_config` apply), or with `apt-get download NAME:ARCH=VERSION`
when `fetch = "apt"`, and verifies it against the lock: a mismatch fails and
names the package. It has one target per package, `@<name>//:<package>_<arch>`
(and `@<name>//:<package>` when pinned for one architecture only), to use in
`static_base(debs = ...)`, which also writes their dpkg status entries.

`bazel run @<name>//:update` re-pins `packages` from apt's index (the
candidate version of each, its sha256 from Debian's signed index and its pool
URL) and rewrites `lock`.""",
    attrs = {
        "fetch": attr.string(doc = "`downloader` (the pool URLs in the lock, through Bazel's downloader) or `apt` (`apt-get download`, for hosts that reach Debian only through apt).", default = "downloader", values = ["downloader", "apt"]),
        "lock": attr.label(doc = "The lock file (JSON `{\"packages\": [{name, version, architecture, sha256, urls}]}`), in the root module.", mandatory = True, allow_single_file = [".json"]),
        "name": attr.string(doc = "Name of the repository to create.", mandatory = True),
        "packages": attr.string_list(doc = "Packages `:update` pins, as apt names them: `NAME` (the candidate's architecture, e.g. `all`) or `NAME:ARCH`.", mandatory = True),
        "sources": attr.string_list(doc = "apt `sources.list` lines `:update` reads (in apt state of its own, e.g. `deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main`); empty: the machine's apt configuration."),
    },
)

_LOCK_NAME = "kiln_tools.lock.json"

def _toolchain_repos(mctx):
    chosen = None
    for mod in mctx.modules:
        tags = mod.tags.toolchains
        if len(tags) > 1:
            fail("rules_kiln: module %s declares kiln.toolchains %d times; declare it once" % (mod.name, len(tags)))
        if tags and (chosen == None or mod.is_root):
            chosen = tags[0]
        if mod.is_root and tags:
            break
    mode = chosen.mode if chosen else "auto"
    urls = dict(chosen.urls) if chosen else {}
    sha256 = dict(chosen.sha256) if chosen else {}
    pinned_in = "kiln.toolchains(sha256 = ...)"

    # A release archive of rules_kiln holds the lock of its prebuilt tools
    # (release/build.sh writes it); this repository does not, so here, and
    # in its e2e workspaces, the tools are built from source.
    lock = mctx.path(Label("//:MODULE.bazel")).dirname.get_child(_LOCK_NAME)
    if mode == "auto":
        mode = "prebuilt" if lock.exists else "source"
        if mode == "prebuilt":
            tools = json.decode(mctx.read(lock)).get("tools", {})
            urls = {key: entry["url"] for key, entry in tools.items()}
            sha256 = {key: entry["sha256"] for key, entry in tools.items()}
            pinned_in = "pinned in rules_kiln's " + _LOCK_NAME
    if mode == "prebuilt" and not urls:
        fail("rules_kiln: toolchains: mode \"prebuilt\" needs `urls` (platform -> URL of an archive of the kiln-* binaries)")
    for key in urls:
        if key not in PLATFORM_CONSTRAINTS:
            fail("rules_kiln: toolchains: urls: unknown platform %r (known: %s)" % (key, ", ".join(PLATFORM_CONSTRAINTS)))

    host = host_platform_key(mctx)
    available = []
    for key in sorted(PLATFORM_CONSTRAINTS):
        if mode == "prebuilt" and key in urls:
            kiln_tools_repo(name = "kiln_tools_" + key, platform = key, mode = "prebuilt", url = urls[key], sha256 = sha256.get(key, ""), pinned_in = pinned_in)
            available.append(key)
        elif mode in ("source", "local") and key == host:
            kiln_tools_repo(name = "kiln_tools_" + key, platform = key, mode = mode, path = chosen.path if chosen else "")
            available.append(key)
        else:
            reason = "mode %s builds tools for the host (%s) only" % (mode, host) if mode != "prebuilt" else "kiln.toolchains urls name no archive for it"
            kiln_tools_repo(name = "kiln_tools_" + key, platform = key, mode = "unavailable", reason = reason)
    kiln_toolchains_hub(name = "kiln_toolchains", host = host, mode = mode, platforms = available)

def _kiln_impl(mctx):
    _toolchain_repos(mctx)

    for mod in mctx.modules:
        for pull in mod.tags.pull:
            if pull.tag and not pull.digest and pull.allow_tag:
                # buildifier: disable=print
                print("WARNING: kiln.pull %s: %s:%s is pulled by tag, not by digest: builds are not reproducible" % (pull.name, pull.image, pull.tag))
            kiln_pull_repo(
                name = pull.name,
                apparent_name = pull.name,
                image = pull.image,
                digest = pull.digest,
                tag = pull.tag,
                allow_tag = pull.allow_tag,
                platforms = pull.platforms,
            )
    _debs_repos(mctx)

    # Every repository is defined by the tags, the host's OS and CPU and files
    # the extension reads (watched): nothing for a lockfile to record.
    return mctx.extension_metadata(reproducible = True)

def _debs_repos(mctx):
    for mod in mctx.modules:
        for debs in mod.tags.debs:
            kiln_debs_repo(
                name = debs.name,
                apparent_name = debs.name,
                fetch = debs.fetch,
                lock = debs.lock,
                lock_path = "/".join([p for p in [debs.lock.package, debs.lock.name] if p]),
                packages = debs.packages,
                sources = debs.sources,
            )

kiln = module_extension(
    implementation = _kiln_impl,
    doc = "Provides the kiln tool toolchains (see `toolchains`), pulled base images (see `pull`) and pinned Debian packages (see `debs`).",
    tag_classes = {"debs": _debs_tag, "pull": _pull_tag, "toolchains": _toolchains_tag},
)

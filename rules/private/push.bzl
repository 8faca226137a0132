"""image_push and image_release: `bazel run` pushes images to registries."""

load("@bazel_skylib//rules:common_settings.bzl", "BuildSettingInfo")
load(":blobs.bzl", "blob_set_spec", "entry_files", "runfiles_layout")
load(":launcher.bzl", "write_launcher")
load(":providers.bzl", "KilnBlobSetInfo")
load(":stamp.bzl", "STAMP_ATTRS", "stamp_files")
load(":toolchain.bzl", "RUN_TOOL_ATTRS", "TOOLCHAIN_TYPES", "run_tool")
load(":utils.bzl", "check_repository", "check_tag", "display_label", "input_runfiles_path", "launcher_runfiles")

KilnPushInfo = provider(
    doc = "What an image_push pushes, for image_release.",
    fields = {
        "image": "KilnBlobSetInfo: the image or index.",
        "label": "string: the push target, for messages.",
        "remote_tags": "list of strings: its tags (may hold `{KEY}` when stamped).",
        "repository": "string: `HOST[:PORT]/NAME`, or empty.",
        "stamp": "bool: `{KEY}` placeholders are filled from the status files.",
    },
)

# The launchers run the host's tools (RUN_TOOL_ATTRS), whatever the exec platform.
_SETTINGS_ATTRS = dict(RUN_TOOL_ATTRS, **{
    "_push_mode": attr.label(default = Label("//settings:push")),
    "_remote_cache": attr.label(default = Label("//settings:remote_cache")),
    "_remote_instance_name": attr.label(default = Label("//settings:remote_instance_name")),
})

def _lazy(ctx):
    return ctx.attr._push_mode[BuildSettingInfo].value == "lazy"

def _remote_cache_flags(ctx):
    url = ctx.attr._remote_cache[BuildSettingInfo].value
    instance = ctx.attr._remote_instance_name[BuildSettingInfo].value
    return {
        "--remote-cache": [url] if url else [],
        "--remote-instance-name": [instance] if instance else [],
    }

def _service(ctx, name, push, lazy, tags):
    """One service of a release spec: its JSON and its runfiles.

    Args:
      ctx: rule context.
      name: prefix of the declared spec file.
      push: the KilnPushInfo.
      lazy: blobs other than manifests stay out of the runfiles.
      tags: the tags the spec names.

    Returns:
      (dict for the spec, list of runfiles).
    """
    info = push.image
    path = input_runfiles_path
    entries = info.metadata.to_list() + info.blobs.to_list()
    lazy_entries = []
    if lazy:
        # Manifests and indexes are read to know what to push; configs and
        # layers are only needed when the registry lacks them.
        manifests = [info.top.blob] + [i.top.blob for i in info.images.values()]
        eager = [e for e in entries if not e.digest or e.blob in manifests]
        lazy_entries = [e for e in entries if e.digest and e.blob not in manifests]
        entries = eager
    spec = ctx.actions.declare_file(name + ".blobs.json")
    ctx.actions.write(spec, blob_set_spec(push.label, info.top, entries, path))
    sboms = [s.sbom for s in info.sboms]
    service = {
        "blobs": path(spec),
        "lazy": [{"digest": path(e.digest), "output": e.blob.path} for e in lazy_entries],
        "repository": push.repository,
        "sboms": [path(f) for f in sboms],
        "stamp": push.stamp,
        "tags": tags,
        "target": push.label,
    }
    files = [spec] + entry_files([info.top] + entries) + [e.digest for e in lazy_entries] + sboms
    return service, files

def _write_release_spec(ctx, services):
    spec = ctx.actions.declare_file(ctx.label.name + ".release.json")
    ctx.actions.write(spec, json.encode({"services": services}))
    return spec

def _image_push_impl(ctx):
    label = display_label(ctx.label)
    stamp = stamp_files(ctx)

    # A `{KEY}` placeholder is only known once stamped; kiln-push checks the result.
    if ctx.attr.repository and not (stamp and "{" in ctx.attr.repository):
        check_repository(ctx.attr.repository, "%s: repository" % label, require_host = True)
    for tag in ctx.attr.remote_tags:
        if not (stamp and "{" in tag):
            check_tag(tag, "%s: remote_tags" % label)
    image = ctx.attr.image[KilnBlobSetInfo]
    push = KilnPushInfo(
        image = image,
        label = label,
        remote_tags = ctx.attr.remote_tags,
        repository = ctx.attr.repository,
        stamp = len(stamp) > 0,
    )
    tool = run_tool(ctx, "push")
    launcher = ctx.actions.declare_file(ctx.label.name + ".push.sh")
    defaults = {
        "--repository": [ctx.attr.repository] if ctx.attr.repository else [],
        "--tag": ctx.attr.remote_tags,
    }
    if _lazy(ctx):
        # Tags stay launcher defaults: `-- --tag T` replaces them, as in
        # eager mode.
        service, files = _service(ctx, ctx.label.name + ".push", push, True, [])
        spec = _write_release_spec(ctx, [service])
        write_launcher(
            ctx,
            launcher,
            tool,
            [("--release", spec)] + [("--stamp", f) for f in stamp],
            dict(defaults, **_remote_cache_flags(ctx)),
            release = True,
        )
        files = files + [spec]
    else:
        # A pulled base's layers stay in the registry: kiln-push mounts or copies them.
        layout, files = runfiles_layout(ctx, ctx.label.name, image, fetch = False)
        sboms = [s.sbom for s in image.sboms]
        files = files + sboms
        write_launcher(
            ctx,
            launcher,
            tool,
            [("--stamp", f) for f in stamp] + [("--sbom", f) for f in sboms],
            defaults,
            layout = layout,
        )
    return [
        DefaultInfo(
            executable = launcher,
            runfiles = launcher_runfiles(ctx, files + [image.digest, tool] + stamp),
        ),
        push,
    ]

image_push = rule(
    implementation = _image_push_impl,
    doc = """`bazel run` pushes `image` (a container_image or image_index) to `repository`.

Blobs the registry already has are not uploaded again; manifests go up by
digest, and tags are set only once everything they point at is there. A tag
that names the image already is not written again: a push of unchanged
content makes no write at all. Transient failures (429, 5xx, resets,
timeouts) are retried with backoff, honouring `Retry-After`; refusals
(401, 403, 404, 405) are not.

`bazel run :push -- --repository HOST/NAME --tag T` overrides the destination.

Each platform manifest's SPDX SBOM (the image's `sbom` output group) is
attached as an OCI 1.1 referrer (`artifactType` `application/spdx+json`),
through the registry's Referrers API where it has one, else at the
referrers tag `sha256-<hex>` (keeping what others put there).
`bazel run :push -- --sign-key KEY` signs the pushed digest as cosign does
(KEY: a PKCS#8 EC P-256 PEM, or cosign's encrypted key with
`COSIGN_PASSWORD`), checked with `cosign verify --key PUB
--insecure-ignore-tlog=true`; an unreadable key or a wrong password pushes
nothing. See docs/supply-chain.md.

With `--@rules_kiln//settings:push=lazy`, Bazel does not download the image's
blobs as runfiles: kiln-push reads only those the registry lacks, from the
local output tree or from the remote cache
(`--@rules_kiln//settings:remote_cache=URL` or `-- --remote-cache URL`: HTTP,
or gRPC with `--@rules_kiln//settings:remote_instance_name=NAME`).""",
    attrs = dict(STAMP_ATTRS, **dict(_SETTINGS_ATTRS, **{
        "image": attr.label(
            doc = "The container_image or image_index to push.",
            mandatory = True,
            providers = [KilnBlobSetInfo],
        ),
        "remote_tags": attr.string_list(
            doc = "Tags to set after the push. Support stamp variables (`{BUILD_EMBED_LABEL}`) when stamped.",
            default = ["latest"],
        ),
        "repository": attr.string(doc = "Destination `HOST[:PORT]/NAME`; may be given at run time with `--repository` instead. Supports stamp variables when stamped."),
    })),
    executable = True,
    toolchains = [TOOLCHAIN_TYPES["push"], TOOLCHAIN_TYPES["pull"]],
)

def _image_release_impl(ctx):
    lazy = _lazy(ctx)
    services = []
    files = []
    stamped = False
    seen = {}
    for n, target in enumerate(ctx.attr.pushes):
        push = target[KilnPushInfo]
        if push.label in seen:
            fail("%s: pushes: %s is listed twice" % (display_label(ctx.label), push.label))
        seen[push.label] = True
        service, service_files = _service(ctx, "%s.%d" % (ctx.label.name, n), push, lazy, push.remote_tags)
        services.append(service)
        files.extend(service_files)
        stamped = stamped or push.stamp
    spec = _write_release_spec(ctx, services)
    stamp = [ctx.info_file, ctx.version_file] if stamped else []
    tool = run_tool(ctx, "push")
    launcher = ctx.actions.declare_file(ctx.label.name + ".release.sh")
    write_launcher(
        ctx,
        launcher,
        tool,
        [("--release", spec)] + [("--stamp", f) for f in stamp],
        _remote_cache_flags(ctx),
        release = True,
    )
    return [DefaultInfo(
        executable = launcher,
        runfiles = launcher_runfiles(ctx, files + [spec, tool] + stamp),
    )]

image_release = rule(
    implementation = _image_release_impl,
    doc = """`bazel run` pushes every image of `pushes` in one run of kiln-push.

    bazel run //:release -- --registry HOST[:PORT] --tag v1.2.3

Each image's SBOMs are attached as referrers and `-- --sign-key KEY` signs
every service's digest, as with image_push (docs/supply-chain.md).

`--registry` replaces the registry of each push's repository
(`ghcr.io/acme/api` becomes `HOST[:PORT]/acme/api`); each `--tag`
(repeatable) is added to each push's own `remote_tags` (which are stamped
as the push says). One line per service is printed: target, repository,
index digest and tags.

Each blob is moved once: a blob several services share (the base layers)
is uploaded to one repository and mounted into the others. Uploads run in
parallel, a bounded number at a time; manifests follow their blobs, indexes
their manifests, and tags come last, once every service's content is in
place, so a failure leaves no new tag anywhere. A service whose tags name
its digest already costs one `HEAD` per tag (and with `--sign-key` one `GET`
of its signature tag) and no write. Transient failures
are retried with backoff (honouring `Retry-After`), a broken upload is
restarted, and a refusal fails the release naming the push target, the
repository and the registry's message.

With `--@rules_kiln//settings:push=lazy`, Bazel downloads no blob: kiln-push
reads only those the registries lack, from the local output tree or from the
remote cache (`--@rules_kiln//settings:remote_cache=URL`: HTTP, or gRPC with
`--@rules_kiln//settings:remote_instance_name=NAME`).""",
    attrs = dict(_SETTINGS_ATTRS, **{
        "pushes": attr.label_list(
            doc = "The image_push targets to push (a service_image's `:push`, for example).",
            mandatory = True,
            allow_empty = False,
            providers = [KilnPushInfo],
        ),
    }),
    executable = True,
    toolchains = [TOOLCHAIN_TYPES["push"]],
)

"""Stamping: whether this build is stamped, and the status files it reads."""

StampSettingInfo = provider(
    doc = "Whether Bazel runs with --stamp.",
    fields = {"enabled": "bool: --stamp is on."},
)

def _stamp_setting_impl(ctx):
    return [StampSettingInfo(enabled = ctx.attr.enabled)]

stamp_setting = rule(
    implementation = _stamp_setting_impl,
    doc = "Carries the value of --stamp (through a select on a config_setting) to rules.",
    attrs = {"enabled": attr.bool(doc = "Whether --stamp is on.", default = False)},
)

STAMP_ATTRS = {
    "stamp": attr.int(
        doc = "Substitute workspace status values (`{BUILD_USER}`, `{BUILD_EMBED_LABEL}`, `{BUILD_TIMESTAMP}`, keys from --workspace_status_command) into `{KEY}` placeholders. 1: always; 0: never (placeholders stay as written); -1 (default): when Bazel runs with --stamp. The container_image macro also accepts True/False. Unstamped actions do not read the status files, so they stay cacheable.",
        default = -1,
        values = [-1, 0, 1],
    ),
    "_stamp_setting": attr.label(default = Label("//rules/private:stamp_setting")),
}

def stamp_files(ctx, stamp = None):
    """The status files an action must read, or [] when not stamping.

    Args:
      ctx: rule context with STAMP_ATTRS.
      stamp: overrides ctx.attr.stamp.

    Returns:
      [stable-status.txt, volatile-status.txt] or [].
    """
    value = ctx.attr.stamp if stamp == None else stamp
    if value == 1 or (value == -1 and ctx.attr._stamp_setting[StampSettingInfo].enabled):
        return [ctx.info_file, ctx.version_file]
    return []

"""Small helpers shared by the rule implementations."""

load(":generated.bzl", "BUILD_ARCHITECTURES", "IMPLIED_VARIANTS", "MAX_LAYERS", "OPERATING_SYSTEMS")

def parse_mode(value, what):
    """Parses an octal file mode written as `0o755`, `0755` or `755`.

    Args:
      value: the string.
      what: prefix of the error message (target and attribute).

    Returns:
      The mode as an int.
    """
    digits = value
    if digits.startswith("0o"):
        digits = digits[2:]
    if not digits or len(digits) > 5:
        fail("%s: %r is not an octal file mode (e.g. \"0o755\")" % (what, value))
    result = 0
    for c in digits.elems():
        if c not in "01234567":
            fail("%s: %r is not an octal file mode (e.g. \"0o755\")" % (what, value))
        result = result * 8 + int(c)
    return result

def workspace_relative_path(file):
    """Path of `file` relative to the root of the repository it belongs to.

    Args:
      file: a File.

    Returns:
      The path, without any `../<repo>/` prefix.
    """
    short = file.short_path
    if short.startswith("../"):
        # External repository: ../<repo>/<path>
        return short.split("/", 2)[2]
    return short

# Launchers (`bazel run`, image_test) find every File they name under this
# runfiles directory, at its exec path: `_kiln_inputs/bazel-out/<config>/bin/...`.
# The short path is not unique: an image_index builds one target once per
# platform, and only the configuration's output directory tells the builds apart.
RUNFILES_INPUTS = "_kiln_inputs"

def input_runfiles_path(file):
    """The runfiles-relative path a launcher names `file` by (see launcher_runfiles).

    Args:
      file: a File.

    Returns:
      `_kiln_inputs/<exec path>`.
    """
    return RUNFILES_INPUTS + "/" + file.path

def launcher_runfiles(ctx, files):
    """Runfiles holding each of `files` at its input_runfiles_path.

    Args:
      ctx: rule context.
      files: list of Files.

    Returns:
      A runfiles object.
    """
    return ctx.runfiles(root_symlinks = {input_runfiles_path(f): f for f in files})

def shell_quote(s):
    """`s` as one single-quoted shell word: nothing in it is expanded.

    Args:
      s: the string.

    Returns:
      The quoted word.
    """
    return "'" + s.replace("'", "'\\''") + "'"

def shell_comment(s):
    """`s` made safe for the rest of a `#` comment line: no line breaks.

    Args:
      s: the string.

    Returns:
      `s` with CR and LF written as `\\r` and `\\n`.
    """
    return s.replace("\r", "\\r").replace("\n", "\\n")

# Bazel CPU constraint -> OCI (architecture, variant).
OCI_ARCHITECTURES = {
    a["bazel_cpu"]: (name, a["variant"])
    for name, a in BUILD_ARCHITECTURES.items()
}

def _normalize_arch(arch):
    """(architecture, variant) of an OCI name or a Bazel CPU name; None if not built for."""
    if arch in BUILD_ARCHITECTURES:
        return (arch, BUILD_ARCHITECTURES[arch]["variant"])
    return OCI_ARCHITECTURES.get(arch)

_SUPPORTED_ARCHITECTURES = ", ".join(BUILD_ARCHITECTURES)
_SUPPORTED_CPUS = ", ".join(["%s -> %s" % (cpu, oci[0]) for cpu, oci in OCI_ARCHITECTURES.items()])
_BUILD_PLATFORMS = " or ".join(["//platforms:linux_" + name for name in BUILD_ARCHITECTURES])

def target_platform(ctx, what, architecture = None, operating_system = None):
    """The platform of the image to build.

    `architecture` set on the rule wins; otherwise the target platform's CPU
    constraint decides, which is how platform transitions pick the arch.

    Args:
      ctx: rule context with `architecture`, `operating_system` and the
        CPU_CONSTRAINT_ATTRS.
      what: prefix of error messages (the target).
      architecture: overrides ctx.attr.architecture.
      operating_system: overrides ctx.attr.operating_system.

    Returns:
      (os, architecture, variant) in OCI terms; variant may be "".
    """
    os = operating_system or ctx.attr.operating_system or "linux"
    check_operating_system(os, what)
    architecture = architecture or ctx.attr.architecture
    if architecture:
        arch = _normalize_arch(architecture)
        if arch == None:
            fail("%s: architecture: %r is not supported (supported: %s)" % (what, architecture, _SUPPORTED_ARCHITECTURES))
        return (os, arch[0], arch[1])
    for cpu, oci in OCI_ARCHITECTURES.items():
        constraint = getattr(ctx.attr, "_cpu_" + cpu)[platform_common.ConstraintValueInfo]
        if ctx.target_platform_has_constraint(constraint):
            return (os, oci[0], oci[1])
    fail("%s: the target platform's CPU is not supported (supported: %s); set `architecture` or build for %s" % (what, _SUPPORTED_CPUS, _BUILD_PLATFORMS))

def check_operating_system(os, what):
    """Fails unless `os` is one of OPERATING_SYSTEMS (Go's GOOS values)."""
    if os not in OPERATING_SYSTEMS:
        fail("%s: operating_system: %r is not an OCI operating system (one of %s)" % (what, os, ", ".join(OPERATING_SYSTEMS)))

def check_config_values(what, entrypoint = [], cmd = [], user = "", workdir = "", labels = {}, volumes = [], layer_count = 0):
    """Checks the image config values known at analysis, as kiln-image does in its action.

    NUL is refused everywhere (env is checked with its expansion, in the
    action); `workdir` and `volumes` must be absolute, `workdir` without `..`
    components; `user` is `user[:group]` (see user_error); at most MAX_LAYERS
    layers of the image's own (the base's are counted in the action).

    Args:
      what: prefix of error messages (the target).
      entrypoint: the entrypoint list.
      cmd: the cmd list.
      user: the user string.
      workdir: the working directory.
      labels: the labels dict.
      volumes: the volume paths.
      layer_count: the layers this target adds.
    """
    for attr, values in [("entrypoint", entrypoint), ("cmd", cmd), ("volumes", volumes)]:
        for i, v in enumerate(values):
            if "\0" in v:
                fail("%s: %s: element %d (%r) has a NUL byte" % (what, attr, i, v))
    for attr, v in [("user", user), ("workdir", workdir)]:
        if "\0" in v:
            fail("%s: %s: %r has a NUL byte" % (what, attr, v))
    for k, v in labels.items():
        if "\0" in k or "\0" in v:
            fail("%s: labels: %r = %r has a NUL byte" % (what, k, v))
    if workdir and path_error(workdir):
        fail("%s: workdir: %s" % (what, path_error(workdir)))
    if ".." in workdir.split("/"):
        fail("%s: workdir: %r has a `..` component (the working directory is an absolute path in the image)" % (what, workdir))
    if user and user_error(user):
        fail("%s: user: %s" % (what, user_error(user)))
    for v in volumes:
        if path_error(v):
            fail("%s: volumes: %s" % (what, path_error(v)))
    if layer_count > MAX_LAYERS:
        fail("%s: layers: %d layers; Docker and containerd accept at most %d per image" % (what, layer_count, MAX_LAYERS))

CPU_CONSTRAINT_ATTRS = {
    "_cpu_" + cpu: attr.label(default = "@platforms//cpu:" + cpu)
    for cpu in OCI_ARCHITECTURES
}

def platform_string(os, arch, variant):
    return "/".join([os, arch] + ([variant] if variant else []))

def platform_key(platform):
    """The spelling of `os/arch[/variant]` that base packages are keyed by.

    `arm64/v8` and `amd64/v1` are `arm64` and `amd64` (images are published
    both ways; kiln-pull selects them as the same).

    Args:
      platform: `os/arch[/variant]`.

    Returns:
      The key.
    """
    parts = platform.split("/")
    if len(parts) == 3 and (parts[1], parts[2]) in IMPLIED_VARIANTS:
        parts = parts[:2]
    return "/".join(parts)

_TAG_FIRST = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
_TAG_REST = _TAG_FIRST + ".-"
_PATH_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789._-/"
_HOST_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-"

def tag_error(tag):
    """Why `tag` is not [A-Za-z0-9_][A-Za-z0-9._-]{0,127}, or None.

    Args:
      tag: the tag.

    Returns:
      The reason, or None when the tag is valid.
    """
    if not tag or len(tag) > 128 or tag[0] not in _TAG_FIRST or [c for c in tag.elems() if c not in _TAG_REST]:
        return "%r is not a valid tag (letters, digits, `_`, `.`, `-`; at most 128; not starting with `.` or `-`)" % tag
    return None

def check_tag(tag, what):
    """Fails unless `tag` matches [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.

    Args:
      tag: the tag.
      what: prefix of the error message (target and attribute).
    """
    err = tag_error(tag)
    if err:
        fail("%s: %s" % (what, err))

def _path_component_ok(component):
    """True when `component` matches [a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)* (kiln_oci::reference)."""
    if not component or [c for c in component.elems() if c not in _PATH_CHARS or c == "/"]:
        return False
    if component[0] in "._-" or component[-1] in "._-":
        return False

    # Between alphanumerics: one `.`, one or two `_`, or any number of `-`.
    normalized = component
    for c in "abcdefghijklmnopqrstuvwxyz123456789".elems():
        normalized = normalized.replace(c, "0")
    for run in normalized.split("0"):
        if run and run not in (".", "_", "__") and run != "-" * len(run):
            return False
    return True

def _host_ok(host):
    """True for dot-separated labels of letters, digits and inner `-`, or a bracketed IPv6 address."""
    if host.startswith("["):
        return host.endswith("]") and len(host) > 2 and not [c for c in host[1:-1].elems() if c not in "0123456789abcdefABCDEF:."]
    for label in host.split("."):
        if not label or label[0] == "-" or label[-1] == "-" or [c for c in label.elems() if c not in _HOST_CHARS]:
            return False
    return True

def repository_error(repository, require_host = False):
    """Why `repository` is not [HOST[:PORT]/]PATH in the tools' grammar, or None.

    Path components match `[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*` (so `a..b`
    is refused), hosts are labels of letters, digits and inner `-`, ports
    1-65535, as kiln_oci::reference checks them.

    Args:
      repository: the repository.
      require_host: True where the tool needs a registry host (kiln-push).

    Returns:
      The reason, or None when the repository is valid.
    """
    parts = repository.split("/")
    path = parts
    if len(parts) > 1 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost" or parts[0].startswith("[")):
        host = parts[0]
        path = parts[1:]
        if ":" in host and not host.endswith("]"):
            host, port = host.rsplit(":", 1)
            if not port.isdigit() or len(port) > 5 or int(port) < 1 or int(port) > 65535:
                return "%r has an invalid port %r (1-65535)" % (repository, port)
        if not _host_ok(host):
            return "%r: %r is not a valid registry host (dot-separated labels of letters, digits and inner `-`)" % (repository, host)
    elif require_host:
        return "%r has no registry host: expected HOST[:PORT]/NAME (a host contains a `.` or a `:`, or is `localhost`)" % repository
    for component in path:
        if not _path_component_ok(component):
            return "%r is not a valid repository: path component %r (lowercase letters and digits, separated by one `.`, one or two `_`, or `-`s; components joined by `/`)" % (repository, component)
    return None

def check_repository(repository, what, require_host = False):
    """Fails unless `repository` is [HOST[:PORT]/]PATH with the tools' grammar (see repository_error).

    Args:
      repository: the repository.
      what: prefix of the error message (target and attribute).
      require_host: True where the tool needs a registry host (kiln-push).
    """
    err = repository_error(repository, require_host)
    if err:
        fail("%s: %s" % (what, err))

def env_name_error(name):
    """Why `name` is not an environment variable name (non-empty, no `=`, whitespace or NUL), or None.

    Args:
      name: the variable name.

    Returns:
      The reason, or None when the name is valid.
    """
    if not name or "=" in name or [c for c in name.elems() if c in " \t\r\n\0"]:
        return "%r is not a valid environment variable name (non-empty, no `=`, whitespace or NUL)" % name
    return None

_USER_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

def user_error(user):
    """Why `user` is not `user[:group]` as the OCI config means it, or None.

    Each part is a name or a numeric id: letters, digits, `_`, `.`, `-`
    (not starting with `-`), or a whole `{KEY}` stamp placeholder. Spaces,
    shell metacharacters and anything else are refused: runtimes look the
    value up in /etc/passwd and /etc/group, nothing else can name a user.

    Args:
      user: the user attribute.

    Returns:
      The reason, or None when the user is valid.
    """
    parts = user.split(":")
    bad = len(parts) > 2
    for part in parts:
        name = part
        if part.startswith("{") and part.endswith("}"):
            name = part[1:-1]
        if not name or name.startswith("-") or [c for c in name.elems() if c not in _USER_CHARS]:
            bad = True
    if bad:
        return "%r is not `user[:group]` (each a name or a numeric id: letters, digits, `_`, `.`, `-`; or a `{KEY}` stamp variable)" % user
    return None

def path_error(path):
    """Why `path` (workdir, a volume) is not an absolute path without NUL, or None.

    Args:
      path: the path.

    Returns:
      The reason, or None when the path is valid.
    """
    if "\0" in path:
        return "%r has a NUL byte" % path
    if not path.startswith("/"):
        return "%r is not an absolute path (it must start with /)" % path
    return None

def expand_make_variables(ctx, value, what):
    """Expands `$(NAME)` make variables (ctx.var: --define, TARGET_CPU, ...).

    Unlike ctx.expand_make_variables, `$NAME` and `${NAME}` are left as they
    are: they are Dockerfile-style references to the image's environment that
    kiln-image expands. `$$` is a literal `$`, as in Bazel.

    Args:
      ctx: rule context.
      value: the string.
      what: prefix of the error message (target and attribute).

    Returns:
      The expanded string.
    """
    out = []
    i = 0
    for _ in range(len(value) + 1):
        if i >= len(value):
            break
        c = value[i]
        if c == "$" and value[i + 1:i + 2] == "(":
            end = value.find(")", i)
            if end < 0:
                fail("%s: %r: unclosed `$(`" % (what, value))
            name = value[i + 2:end]
            if name not in ctx.var:
                fail("%s: %r: unknown make variable $(%s)" % (what, value, name))
            out.append(ctx.var[name])
            i = end + 1
        elif c == "$" and value[i + 1:i + 2] == "$":
            out.append("$")
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)

def port_error(port):
    """Why `port` is not PORT or PORT/PROTO (tcp, udp, sctp; PORT 1-65535, no leading zero), or None.

    Args:
      port: the port string.

    Returns:
      The reason, or None when the port is valid.
    """
    number, _, proto = port.partition("/")
    if not number.isdigit() or number[0] == "0" or len(number) > 5 or int(number) > 65535 or (proto and proto not in ("tcp", "udp", "sctp")) or port.endswith("/"):
        return "%r is not a port (`80`, `80/tcp`, `53/udp`, `9000/sctp`; 1-65535)" % port
    return None

def check_port(port, what):
    """Fails unless `port` is PORT or PORT/PROTO (tcp, udp, sctp), PORT in 1-65535.

    Args:
      port: the port string.
      what: prefix of the error message (target and attribute).
    """
    err = port_error(port)
    if err:
        fail("%s: %s" % (what, err))

def check_reference(reference, what):
    """Fails unless `reference` is REPOSITORY:TAG.

    Args:
      reference: the reference.
      what: prefix of the error message (target and attribute).
    """
    slash = reference.rfind("/")
    colon = reference.rfind(":")
    if colon <= slash:
        fail("%s: %r needs a tag (REPOSITORY:TAG)" % (what, reference))
    check_repository(reference[:colon], what)
    check_tag(reference[colon + 1:], what)

def display_label(label):
    """A label as users write it: `//pkg:name` in the main repository.

    Args:
      label: a Label.

    Returns:
      The label as a string, without `@@` for the main repository.
    """
    s = str(label)
    return s[2:] if s.startswith("@@//") else s

# Shared by e2e/suites/push.sh and e2e/suites/load.sh. Source it; it defines helpers only.
# shellcheck shell=bash

# The `bazel run` launchers (push, load, release, container_image's loader)
# and image_test's, on a generated workspace:
#   :index   image_index(image = :portable, platforms = amd64 + arm64): both
#            platforms' builds of :portable have the same short paths, so only
#            the configuration's output directory tells their Files apart;
#   :one     a single-platform image (the host's CPU);
#   for each hostile name code C of launch_name_codes: image_push push_C,
#   image_load load_C, image_release release_C, image_test test_C and
#   container_image image_C, all named so that a launcher interpolating its
#   name into shell would run `touch $LAUNCH_MARK`.

LAUNCH_DIR="$KILN_WORK/launch"
LAUNCH_MARK="$LAUNCH_DIR/pwned"

# launch_name_codes: one per line, the name suffixes. Each would run touch
# on the marker if it reached a shell as code: inside double quotes ($(),
# backquote, a closing `"`), inside single quotes (a `'` that ends them), or
# where spaces split words and `;` ends a command.
launch_name_codes() {
    local m=$LAUNCH_MARK
    printf '%s\n' \
        "d\$(touch\${IFS}$m)" \
        "b\`touch\${IFS}$m\`" \
        "q\"\$(touch\${IFS}$m)\"" \
        "s'\$(touch\${IFS}$m)'" \
        "m'\"\$(touch\${IFS}$m)\"'" \
        "w x;touch $m;y"
}

# launch_refused_codes: names Bazel refuses (a backslash; a line break, a
# tab: non-printable), NUL-separated.
launch_refused_codes() {
    printf 'k\\$(touch${IFS}%s)\\\0' "$LAUNCH_MARK"
    printf 'n\n$(touch${IFS}%s)\ntouch %s\0' "$LAUNCH_MARK" "$LAUNCH_MARK"
    printf 't\t$(touch${IFS}%s)\0' "$LAUNCH_MARK"
}

# write_launch_workspace [CODE]: the workspace in $LAUNCH_DIR/ws; with CODE,
# the targets of that name code too.
write_launch_workspace() {
    local dir="$LAUNCH_DIR/ws" extra=${1:-}
    rm -rf "$dir"
    mkdir -p "$dir"
    cat >"$dir/MODULE.bazel" <<MOD
module(name = "kiln_launch_workspace")

bazel_dep(name = "rules_kiln")

local_path_override(
    module_name = "rules_kiln",
    path = "$KILN_ROOT",
)
MOD
    : >"$dir/REPO.bazel"
    echo "launched $$ $(date +%s%N)" >"$dir/hello.txt"
    cat >"$dir/hello.yaml" <<'YAML'
schemaVersion: 2.0.0
fileContentTests:
  - name: hello
    path: /hello.txt
    expectedContents: ["launched"]
YAML
    launch_name_codes >"$LAUNCH_DIR/codes"
    python3 - "$dir/BUILD.bazel" "$(host_arch)" "$LAUNCH_DIR/codes" "$extra" <<'EOF'
import json, sys
out, arch, codes_file, extra = sys.argv[1:5]
codes = open(codes_file).read().splitlines()
if extra:
    codes.append(extra)
q = json.dumps  # a JSON string is a Starlark string literal (only \n, \t, \", \\ escapes here)
build = ['''load("@rules_kiln//rules:defs.bzl", "container_image", "container_layer", "image_index", "image_load", "image_push", "image_release", "image_test")

container_layer(
    name = "layer",
    files = ["hello.txt"],
)

container_image(
    name = "portable",
    entrypoint = ["/hello.txt"],
    layers = [":layer"],
)

image_index(
    name = "index",
    image = ":portable",
    platforms = [
        "@rules_kiln//platforms:linux_amd64",
        "@rules_kiln//platforms:linux_arm64",
    ],
)

image_push(
    name = "push_index",
    image = ":index",
)

image_load(
    name = "load_index",
    image = ":index",
    repo_tags = ["kiln-e2e-launch/index:latest"],
)

container_image(
    name = "one",
    architecture = %s,
    layers = [":layer"],
)
''' % q(arch)]
for i, c in enumerate(codes, 1):
    build.append('''
image_push(name = %s, image = ":one", repository = "localhost:1/kiln/names")

image_load(name = %s, image = ":one", repo_tags = ["kiln-e2e-launch/name%d:latest"])

image_release(name = %s, pushes = [%s])

image_test(name = %s, configs = ["hello.yaml"], image = ":one")

container_image(name = %s, architecture = %s, layers = [":layer"])
''' % (q("push_" + c), q("load_" + c), i, q("release_" + c), q(":push_" + c), q("test_" + c), q("image_" + c), q(arch)))
open(out, "w").write("".join(build))
EOF
}

# launch_exec FILE ARGS...: runs a file Bazel built where Bazel runs (this
# machine, or its chroot: kiln-chroot).
launch_exec() {
    if command -v kiln-chroot >/dev/null 2>&1; then kiln-chroot "$@"; else "$@"; fi
}

# launch_bazel ARGS...: bazel in the launch workspace (its own output base).
# (stdin: /dev/null, so that a loop reading names keeps its input.)
launch_bazel() { (cd "$LAUNCH_DIR/ws" && kbazel launch "$@" </dev/null); }

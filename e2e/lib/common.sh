# Shared by e2e/run.sh and examples/run.sh. Source it; it defines helpers only.
# shellcheck shell=bash

KILN_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KILN_WORK="${KILN_WORK:-${TMPDIR:-/tmp}/kiln-e2e}"
mkdir -p "$KILN_WORK"

passed=0
failed=0
skipped=0
failures=()
skips=()

log() { printf '\033[1m== %s\033[0m\n' "$*" >&2; }

# Every check's time since the previous one (the suite's steps), when the
# runner asks for them (KILN_STEP_LOG): "SECONDS<TAB>SUITE<TAB>CHECK" lines.
step_mark=$SECONDS
record_step() {
    [ -n "${KILN_STEP_LOG:-}" ] || return 0
    printf '%s\t%s\t%s\n' "$((SECONDS - step_mark))" "${KILN_SUITE:-}" "$1" >>"$KILN_STEP_LOG"
    step_mark=$SECONDS
}

pass() { passed=$((passed + 1)); printf 'PASS %s\n' "$1"; record_step "$1"; }
fail() {
    failed=$((failed + 1)); failures+=("$1")
    printf 'FAIL %s\n' "$1"
    record_step "$1"
    [ -n "${2:-}" ] && printf '     %s\n' "$2" | head -40
    return 0
}

# skip NAME REASON: a check that could not run. Counted and printed, never a pass;
# CI (CI=true) has every tool, so there a skip fails the run (see summary).
skip() {
    skipped=$((skipped + 1)); skips+=("$1: $2")
    printf 'SKIP %s\n     %s\n' "$1" "$2"
    record_step "$1"
}

# check NAME CMD...: runs CMD, PASS when it exits 0, FAIL (with its output) otherwise.
check() {
    local name=$1; shift
    local out
    if out=$("$@" 2>&1); then pass "$name"; else fail "$name" "$out"; fi
}

# expect_eq NAME WANT GOT
expect_eq() {
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "want: $2 | got: $3"; fi
}

summary() {
    echo
    if [ "$failed" -gt 0 ]; then
        printf 'failed: %s\n' "${failures[@]}"
    fi
    if [ "$skipped" -gt 0 ]; then
        printf 'skipped: %s\n' "${skips[@]}"
    fi
    echo "$passed passed, $failed failed, $skipped skipped"
    [ "$failed" -eq 0 ] || return 1
    if [ "$skipped" -gt 0 ] && [ "${CI:-}" = true ]; then
        echo "CI has every tool: a skipped check is a failure here"
        return 1
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL [SECONDS]: polls until URL answers with any HTTP status.
wait_http() {
    local url=$1 limit=${2:-30} start=$SECONDS
    until curl -s -o /dev/null "$url"; do
        if [ $((SECONDS - start)) -ge "$limit" ]; then return 1; fi
        sleep 0.2
    done
}

# start_registry NAME [HTPASSWD_FILE]: starts Debian's docker-registry on a free
# 127.0.0.1 port; sets REGISTRY (host:port) and REGISTRY_LOG. KILN_REGISTRY_STORAGE (not
# REGISTRY_*: the registry reads those as configuration)
# adds to its storage map (e.g. "maintenance: {readonly: {enabled: true}}").
start_registry() {
    local name=$1 dir="$KILN_WORK/registry-$1" port
    port=$(free_port)
    rm -rf "$dir"; mkdir -p "$dir/data"
    {
        echo "version: 0.1"
        echo "log: {level: info, accesslog: {disabled: false}}"
        echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}${KILN_REGISTRY_STORAGE:+, $KILN_REGISTRY_STORAGE}}"
        echo "http: {addr: 127.0.0.1:$port}"
        if [ -n "${2:-}" ]; then
            echo "auth: {htpasswd: {realm: kiln-e2e, path: $2}}"
        fi
    } >"$dir/config.yml"
    REGISTRY_LOG="$dir/registry.log"
    docker-registry serve "$dir/config.yml" >"$REGISTRY_LOG" 2>&1 &
    echo $! >"$dir/pid"
    REGISTRY="127.0.0.1:$port"
    if ! wait_http "http://$REGISTRY/v2/" 30; then
        echo "docker-registry did not start; log:" >&2; tail -20 "$REGISTRY_LOG" >&2
        return 1
    fi
}

stop_registries() {
    local pidfile
    for pidfile in "$KILN_WORK"/registry-*/pid; do
        [ -f "$pidfile" ] || continue
        kill "$(cat "$pidfile")" 2>/dev/null || true
        rm -f "$pidfile"
    done
}

# crane from the sid chroot (Debian 12 has no crane package).
crane() {
    if command -v kiln-chroot >/dev/null 2>&1; then kiln-chroot crane "$@"; else sid crane "$@"; fi
}

# The Rust tools are compiled once per run into this directory and shared by
# every fresh output base (see rules/private/toolchains_repo.bzl).
export KILN_CARGO_TARGET_DIR="${KILN_CARGO_TARGET_DIR:-$KILN_WORK/cargo-target}"

# The launchers' cache of fetched base layers (kiln-pull layout --cache): the
# tests' own, not the user's ~/.cache.
export KILN_BLOB_CACHE="${KILN_BLOB_CACHE:-$KILN_WORK/blob-cache}"

# kbazel OUTPUT_BASE_NAME ARGS...: bazel with its own output base under KILN_WORK,
# under Bazel 8 and 9's defaults (--config=bazel9, bazel9.bazelrc) unless
# KILN_BAZEL_CONFIG says otherwise (empty: Bazel 7's defaults). A workspace whose
# .bazelrc does not define the config (the suites write some) gets it from
# bazel9.bazelrc.
kbazel() {
    local ob=$1; shift
    local cmd=$1; shift
    local config=${KILN_BAZEL_CONFIG-bazel9} startup=() flags=()
    if [ -n "$config" ]; then
        flags=(--config="$config")
        grep -qs -e '^common:bazel9 ' -e 'bazel9\.bazelrc' .bazelrc || startup=(--bazelrc="$KILN_ROOT/bazel9.bazelrc")
    fi
    bazel --output_base="$KILN_WORK/ob-$ob" "${startup[@]}" "$cmd" "${flags[@]}" --repo_env=KILN_CARGO_TARGET_DIR="$KILN_CARGO_TARGET_DIR" "$@"
}

# host_arch: this machine's CPU in OCI terms (amd64, arm64, ...), from the
# rules' own table (rules/private/generated.bzl: plain literals, so Python
# reads it); an architecture images are not built for is printed as uname has it.
host_arch() {
    python3 - "$KILN_ROOT/rules/private/generated.bzl" "$(uname -m)" <<'PY'
import sys
tables = {}
exec(open(sys.argv[1]).read(), tables)
cpu = sys.argv[2]
print(next((arch for arch, a in tables["BUILD_ARCHITECTURES"].items() if cpu in (arch, a["bazel_cpu"])), cpu))
PY
}

docker_available() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

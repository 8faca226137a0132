#!/usr/bin/env bash
# Benchmark: building one layer, kiln-layer (tar + diff_id, compression on
# worker threads, digest; one pipeline) directly and through `bazel build`
# of a container_layer(files = glob(["data/**"])), against the plain
# pipelines on the same files: GNU tar | gzip -6, pigz -6 and zstd -3 -T0 with
# sha256sum of both streams, and the floor tar | sha256sum. One table per
# run: wall time, MB/s of file bytes, ratio to GNU gzip, peak RSS
# (/usr/bin/time -v). Then how much of a `bazel build` of a 1 GiB image is
# Bazel's own work, from its --profile.
#
#   bench/layer.sh [MIB]      default 1024 (../shared/bench/workload.py DIR MIB)
#
# The input is generated once into $KILN_BENCH_CACHE (default
# /tmp/kiln-bench-data-MIB) and hard-linked into a scratch workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
mib=${1:-1024}
for tool in pigz zstd gzip python3 bc /usr/bin/time bazel; do
    command -v "$tool" >/dev/null || { echo "bench: $tool is missing (e2e/setup/deps.sh installs it)" >&2; exit 1; }
done
work=$(mktemp -d)
cleanup() {
    [ -d "$work/ob" ] && (cd "$work/ws" && bazel --output_base="$work/ob" shutdown >/dev/null 2>&1)
    rm -rf "$work"
}
trap cleanup EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
cargo build --release --locked -q -p kiln-layer
layer="$CARGO_TARGET_DIR/release/kiln-layer"

data=${KILN_BENCH_CACHE:-/tmp/kiln-bench-data-$mib}
if [ ! -f "$data.done" ]; then
    rm -rf "$data"
    python3 "$root/../shared/bench/workload.py" "$data" "$mib" >/dev/null
    touch "$data.done"
fi
ws="$work/ws"
mkdir -p "$ws"
cp -al "$data" "$ws/data"
total=$(find "$ws/data" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
files=$(find "$ws/data" -type f | wc -l)

# The direct runs' spec: every file under /data, as container_layer writes it.
for c in gzip zstd; do
    python3 - "$ws" "$c" >"$work/$c.json" <<'PY'
import json, os, sys
ws, compression = sys.argv[1], sys.argv[2]
entries = []
for dirpath, _, names in os.walk(os.path.join(ws, "data")):
    for n in names:
        p = os.path.join(dirpath, n)
        entries.append({"attr": "files", "kind": "file", "path": "/" + os.path.relpath(p, ws), "source": p, "mode": 0o555})
print(json.dumps({"target": "//bench:layer", "compression": compression, "entries": entries}))
PY
done

cat >"$ws/MODULE.bazel" <<EOF
bazel_dep(name = "rules_kiln")
local_path_override(module_name = "rules_kiln", path = "$root")
EOF
cat >"$ws/BUILD.bazel" <<'EOF'
load("@rules_kiln//rules:defs.bzl", "container_image", "container_layer")

container_layer(name = "layer", data_path = ".", files = glob(["data/**"]))

container_layer(name = "layer_zstd", compression = "zstd", data_path = ".", files = glob(["data/**"]))

container_image(name = "image", architecture = "amd64", layers = [":layer"])
EOF
ob="$work/ob"
kb() { (cd "$ws" && bazel --output_base="$ob" "$@"); }
kb build --repo_env=KILN_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" //:layer //:layer_zstd >"$work/warm.log" 2>&1 ||
    { tail -20 "$work/warm.log"; exit 1; }
cat "$ws"/data/*/*/* >/dev/null  # the page cache holds the files, as for every row

# measure NAME CMD...: wall seconds and peak RSS (KiB) of CMD.
declare -a rows
gnu=""
measure() {
    local name=$1; shift
    /usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    local wall rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time")
    rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
    rows+=("$name"$'\t'"$wall"$'\t'"$rss")
    [ "$name" = "GNU tar | gzip -6 | sha256sum (both streams)" ] && gnu=$wall
    return 0
}
bazel_row() { # NAME TARGET: a clean rebuild of TARGET (warm server, tools built)
    kb clean >/dev/null 2>&1
    local s e
    s=$(date +%s.%N)
    kb build --repo_env=KILN_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" "$2" >"$work/b.log" 2>&1 || { tail -20 "$work/b.log"; exit 1; }
    e=$(date +%s.%N)
    rows+=("$1"$'\t'"$(echo "$e - $s" | bc -l)"$'\t')
}
pipe=(bash -o pipefail -c)
tarcmd="tar --sort=name -C '$ws' -cf - data"

measure "kiln-layer gzip -6 (direct)" "$layer" --spec "$work/gzip.json" --blob "$work/k.tar.gz" --descriptor "$work/k.json" --listing "$work/k.l.json"
measure "kiln-layer zstd -3 (direct)" "$layer" --spec "$work/zstd.json" --blob "$work/k.tar.zst" --descriptor "$work/kz.json" --listing "$work/kz.l.json"
bazel_row "bazel build container_layer gzip" //:layer
bazel_row "bazel build container_layer zstd" //:layer_zstd
measure "GNU tar | gzip -6 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/t.sha') | gzip -6 -n | tee '$work/t.tar.gz' | sha256sum"
measure "tar | pigz -6 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/p.sha') | pigz -6 -n | tee '$work/p.tar.gz' | sha256sum"
measure "tar | zstd -3 -T0 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/z.sha') | zstd -q -3 -T0 | tee '$work/z.tar.zst' | sha256sum"
measure "floor: tar | sha256sum" "${pipe[@]}" "$tarcmd | sha256sum"

echo "input: $files files, $((total / 1048576)) MiB (workload.py $mib); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '| %-46s | %8s | %7s | %7s | %12s |\n' "path" "time s" "MB/s" "x GNU" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..48})" "----------" "---------" "---------" "--------------"
for r in "${rows[@]}"; do
    IFS=$'\t' read -r name wall rss <<<"$r"
    printf '| %-46s | %8.2f | %7.1f | %7.2f | %12s |\n' "$name" "$wall" "$(echo "$total / 1000000 / $wall" | bc -l)" \
        "$(echo "$wall / $gnu" | bc -l)" "$([ -n "$rss" ] && echo $((rss / 1024)) || echo "(in Bazel)")"
done
echo "blob sizes (bytes): kiln gzip $(stat -c %s "$work/k.tar.gz"), GNU gzip -6 $(stat -c %s "$work/t.tar.gz"), pigz -6 $(stat -c %s "$work/p.tar.gz"), kiln zstd $(stat -c %s "$work/k.tar.zst"), zstd -3 $(stat -c %s "$work/z.tar.zst")"

# Bazel's own share of a clean `bazel build` of a 1 GiB image (warm server):
# wall time minus the time the kiln tools ran (subprocesses of the actions).
kb clean >/dev/null 2>&1
kb build --repo_env=KILN_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" --profile="$work/profile.json" //:image >"$work/b.log" 2>&1 ||
    { tail -20 "$work/b.log"; exit 1; }
python3 - "$work/profile.json" <<'PY'
import json, sys
events = json.load(open(sys.argv[1]))
events = events["traceEvents"] if isinstance(events, dict) else events
spans = [e for e in events if e.get("ph") == "X"]
start = min(e["ts"] for e in spans)
end = max(e["ts"] + e.get("dur", 0) for e in spans)
wall = (end - start) / 1e6
def total(pred):
    return sum(e.get("dur", 0) for e in spans if pred(e)) / 1e6
tools = total(lambda e: e.get("name") in ("subprocess.run", "Process") or e.get("cat") == "local process execution")
sandbox = total(lambda e: "sandbox" in e.get("name", "").lower())
digest = total(lambda e: "digest" in e.get("name", "").lower() or "hash" in e.get("name", "").lower())
actions = {}
for e in spans:
    if e.get("cat") == "action processing":
        actions[e.get("name", "?")] = actions.get(e.get("name", "?"), 0) + e.get("dur", 0) / 1e6
print(f"bazel build //:image (1 GiB layer, clean, warm server): {wall:.2f} s in the profile; the kiln tools ran {tools:.2f} s;"
      f" Bazel itself {max(0.0, wall - tools):.2f} s ({100 * max(0.0, wall - tools) / wall:.0f}%): sandbox set-up and removal {sandbox:.2f} s,"
      f" input/output digests {digest:.2f} s, the rest analysis, scheduling and output checks")
for name, secs in sorted(actions.items(), key=lambda kv: -kv[1])[:4]:
    print(f"  action {name}: {secs:.2f} s")
PY

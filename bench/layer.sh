#!/usr/bin/env bash
# Benchmark: building one layer, kiln-layer (tar + diff_id, compression on
# worker threads, digest; one pipeline) directly and through `bazel build`
# of a container_layer(files = glob(["data/**"])), against the plain
# pipelines on the same files: GNU tar | gzip -6, pigz -6 and zstd -3 -T0 with
# sha256sum of both streams, and the floor tar | sha256sum. One table per
# run: median wall time of KILN_BENCH_RUNS runs (default 5), MB/s of file
# bytes, ratio to GNU gzip, peak RSS (/usr/bin/time -v). `bazel build` is
# timed twice: after one input file changed (the rebuild a developer gets:
# analysis cached, the layer action runs again) and after `bazel clean`
# (loading, analysis and toolchain resolution again). Then how much of a
# `bazel build` of a 1 GiB image is Bazel's own work, from its --profile.
# Every timed run starts after `sync`, so that no earlier run's blob is
# written back during it, and every `bazel build` row has one untimed
# warm-up build first.
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

runs=${KILN_BENCH_RUNS:-5}
# median of the values on stdin (one a line)
median() { sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }

# measure NAME CMD...: median wall seconds and the peak RSS (KiB) of CMD over $runs runs.
declare -a rows
gnu=""
measure() {
    local name=$1; shift
    local walls="" rss=0 i wall r
    for ((i = 0; i < runs; i++)); do
        sync # the previous run's written blob is not flushed during this one
        /usr/bin/time -v -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$work/time")
        r=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time")
        walls+="$wall"$'\n'
        [ "$r" -gt "$rss" ] && rss=$r
    done
    wall=$(printf '%s' "$walls" | median)
    rows+=("$name"$'\t'"$wall"$'\t'"$rss")
    [ "$name" = "GNU tar | gzip -6 | sha256sum (both streams)" ] && gnu=$wall
    return 0
}

# One input file, replaced (not edited: the data is hard-linked from the
# cache) by a copy with a different last line before every edited rebuild,
# so the layer action runs again while Bazel's analysis stays cached: the
# build a developer gets after changing a file.
edited="$ws/data/$(cd "$ws/data" && find . -type f | sort | sed -n 1p)"
cp "$edited" "$work/edited.orig"
edits=0
edit_input() {
    edits=$((edits + 1))
    { cat "$work/edited.orig"; echo "edit $edits"; } >"$work/edited.new"
    mv "$work/edited.new" "$edited"
}
# bazel_row NAME MODE TARGET: median wall of $runs builds of TARGET, warm
# server, tools built. MODE edited: after edit_input (analysis cached);
# clean: after `bazel clean` (analysis, toolchain resolution and the local
# repositories again).
bazel_row() {
    local walls="" i s e
    # One untimed build first, as hyperfine's --warmup: the server's JIT has
    # compiled the paths an edited rebuild takes, as in a developer's server.
    for ((i = -1; i < runs; i++)); do
        if [ "$2" = clean ]; then kb clean >/dev/null 2>&1; else edit_input; fi
        sync
        s=$(date +%s.%N)
        kb build --repo_env=KILN_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" "$3" >"$work/b.log" 2>&1 || { tail -20 "$work/b.log"; exit 1; }
        e=$(date +%s.%N)
        grep -q '1 processwrapper-sandbox\|1 linux-sandbox\|1 local' "$work/b.log" ||
            { echo "bench: $3 did not run its layer action:"; tail -5 "$work/b.log"; exit 1; }
        [ "$i" -ge 0 ] && walls+="$(echo "$e - $s" | bc -l)"$'\n'
    done
    rows+=("$1"$'\t'"$(printf '%s' "$walls" | median)"$'\t')
}
pipe=(bash -o pipefail -c)
tarcmd="tar --sort=name -C '$ws' -cf - data"

measure "kiln-layer gzip -6 (direct)" "$layer" --spec "$work/gzip.json" --blob "$work/k.tar.gz" --descriptor "$work/k.json" --listing "$work/k.l.json"
measure "kiln-layer zstd -3 (direct)" "$layer" --spec "$work/zstd.json" --blob "$work/k.tar.zst" --descriptor "$work/kz.json" --listing "$work/kz.l.json"
bazel_row "bazel build container_layer gzip, file edited" edited //:layer
bazel_row "bazel build container_layer zstd, file edited" edited //:layer_zstd
bazel_row "bazel build container_layer gzip, after clean" clean //:layer
bazel_row "bazel build container_layer zstd, after clean" clean //:layer_zstd
measure "GNU tar | gzip -6 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/t.sha') | gzip -6 -n | tee '$work/t.tar.gz' | sha256sum"
measure "tar | pigz -6 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/p.sha') | pigz -6 -n | tee '$work/p.tar.gz' | sha256sum"
measure "tar | zstd -3 -T0 | sha256sum (both streams)" "${pipe[@]}" "$tarcmd | tee >(sha256sum >'$work/z.sha') | zstd -q -3 -T0 | tee '$work/z.tar.zst' | sha256sum"
measure "floor: tar | sha256sum" "${pipe[@]}" "$tarcmd | sha256sum"

echo "input: $files files, $((total / 1048576)) MiB (workload.py $mib); $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
printf '| %-50s | %8s | %7s | %7s | %12s |\n' "path" "time s" "MB/s" "x GNU" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..52})" "----------" "---------" "---------" "--------------"
for r in "${rows[@]}"; do
    IFS=$'\t' read -r name wall rss <<<"$r"
    printf '| %-50s | %8.2f | %7.1f | %7.2f | %12s |\n' "$name" "$wall" "$(echo "$total / 1000000 / $wall" | bc -l)" \
        "$(echo "$wall / $gnu" | bc -l)" "$([ -n "$rss" ] && echo $((rss / 1024)) || echo "(in Bazel)")"
done
echo "blob sizes (bytes): kiln gzip $(stat -c %s "$work/k.tar.gz"), GNU gzip -6 $(stat -c %s "$work/t.tar.gz"), pigz -6 $(stat -c %s "$work/p.tar.gz"), kiln zstd $(stat -c %s "$work/k.tar.zst"), zstd -3 $(stat -c %s "$work/z.tar.zst")"

# Bazel's own share of a `bazel build` of a 1 GiB image (warm server), from
# --profile: the wall time, the time the kiln tools ran (the actions'
# subprocesses) and Bazel's named pieces around them. Once after an edited
# file, once after `bazel clean`.
profile_row() { # MODE
    if [ "$1" = clean ]; then kb clean >/dev/null 2>&1; else edit_input; fi
    sync
    kb build --repo_env=KILN_CARGO_TARGET_DIR="$CARGO_TARGET_DIR" --profile="$work/profile.json" //:image >"$work/b.log" 2>&1 ||
        { tail -20 "$work/b.log"; exit 1; }
    python3 - "$work/profile.json" "$1" "$mib" <<'PY'
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
actions = [e for e in spans if e.get("cat") == "action processing"]
first_action = min((e["ts"] for e in actions), default=end)
pieces = {
    "before the first action (file changes, loading, analysis)": (first_action - start) / 1e6,
    "deleting the previous outputs (action.prepare)": total(lambda e: e.get("name") == "action.prepare"),
    "sandbox set-up and removal": total(lambda e: e.get("name") in ("sandbox.createFileSystem", "sandbox.delete", "sandbox.cleanup")),
    "hashing the outputs (checkOutputs)": total(lambda e: e.get("name") == "checkOutputs"),
}
bazel = max(0.0, wall - tools)
what = "after bazel clean" if sys.argv[2] == "clean" else "one file edited"
print(f"bazel build //:image ({sys.argv[3]} MiB layer, {what}, warm server): {wall:.2f} s; the kiln tools ran {tools:.2f} s;"
      f" Bazel itself {bazel:.2f} s ({100 * bazel / wall:.0f}%), of which")
for name, secs in pieces.items():
    print(f"  {name}: {secs:.2f} s")
PY
}
profile_row edited
profile_row clean

#!/usr/bin/env bash
# Benchmark: kiln-layer (tar -> sha256 -> gzip -6 / zstd -> sha256, one pass)
# against the plain alternative (GNU tar | gzip -6, then sha256sum of both),
# on a copy of /usr/lib (real binaries and text). Prints MB/s of tar input.
#
#   bench/layer.sh [SIZE_MB]      default 200
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb=${1:-200}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --locked -q -p kiln-layer
layer="$CARGO_TARGET_DIR/release/kiln-layer"

# Input: files from /usr/lib until SIZE_MB.
mkdir -p "$work/in"
total=0
while IFS= read -r -d '' f; do
    s=$(stat -c %s "$f")
    [ $((total + s)) -gt $((size_mb * 1024 * 1024)) ] && break
    rel=${f#/usr/lib/}
    mkdir -p "$work/in/$(dirname "$rel")"
    cp "$f" "$work/in/$rel"
    total=$((total + s))
done < <(find /usr/lib -type f -size +4k -print0 | sort -z)
files=$(find "$work/in" -type f | wc -l)
echo "input: $files files, $((total / 1024 / 1024)) MB (from /usr/lib)"

spec() { # COMPRESSION
    python3 - "$work/in" "$1" <<'PY'
import json, os, sys
root, compression = sys.argv[1], sys.argv[2]
entries = []
for dirpath, _, names in os.walk(root):
    for n in names:
        p = os.path.join(dirpath, n)
        entries.append({"attr": "files", "kind": "file", "path": "/" + os.path.relpath(p, root), "source": p, "mode": 0o644})
print(json.dumps({"target": "//bench:layer", "compression": compression, "entries": entries}))
PY
}
spec gzip >"$work/gzip.json"
spec zstd >"$work/zstd.json"
cat "$work"/in/* >/dev/null 2>&1 || true  # warm the page cache

seconds() { local s e; s=$(date +%s.%N); "$@" >/dev/null; e=$(date +%s.%N); echo "$e - $s" | bc -l; }
rate() { echo "scale=1; $total / 1048576 / $1" | bc -l; }

t=$(seconds "$layer" --spec "$work/gzip.json" --blob "$work/k.tar.gz" --descriptor "$work/k.json" --listing "$work/k.l.json")
printf '%-52s %6.2f s  %7s MB/s\n' "kiln-layer gzip -6 (+ diff_id and digest)" "$t" "$(rate "$t")"
t=$(seconds "$layer" --spec "$work/zstd.json" --blob "$work/k.tar.zst" --descriptor "$work/kz.json" --listing "$work/kz.l.json")
printf '%-52s %6.2f s  %7s MB/s\n' "kiln-layer zstd -3 (+ diff_id and digest)" "$t" "$(rate "$t")"
t=$(seconds bash -c "tar --sort=name -C '$work/in' -cf - . | tee >(sha256sum >'$work/t.sha') | gzip -6 -n | tee '$work/t.tar.gz' | sha256sum")
printf '%-52s %6.2f s  %7s MB/s\n' "GNU tar | gzip -6, sha256sum of both" "$t" "$(rate "$t")"
t=$(seconds bash -c "tar --sort=name -C '$work/in' -cf - . | sha256sum")
printf '%-52s %6.2f s  %7s MB/s\n' "limit: GNU tar | sha256sum (no compression)" "$t" "$(rate "$t")"
echo "blob sizes: kiln gzip $(stat -c %s "$work/k.tar.gz"), kiln zstd $(stat -c %s "$work/k.tar.zst"), gzip -6 $(stat -c %s "$work/t.tar.gz") bytes"

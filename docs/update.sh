#!/usr/bin/env bash
# Regenerates docs/rules.md from the rules' docstrings (starlark_doc_extract).
#   docs/update.sh           write docs/rules.md
#   docs/update.sh --check   exit 1 if docs/rules.md is not up to date
set -euo pipefail
cd "$(dirname "$0")/.."
bazel_args=(${KILN_DOCS_BAZEL_ARGS:-})
# Under Bazel 8 and 9's defaults (.bazelrc imports bazel9.bazelrc), as the e2e suites build.
flags=(--config=bazel9)
bazel "${bazel_args[@]}" build "${flags[@]}" -- //docs:defs_doc.textproto //docs:extensions_doc.textproto >/dev/null 2>&1 ||
    bazel "${bazel_args[@]}" build "${flags[@]}" -- //docs:defs_doc.textproto //docs:extensions_doc.textproto
bin=$(bazel "${bazel_args[@]}" info "${flags[@]}" bazel-bin 2>/dev/null)
generated=$(python3 docs/render_docs.py "rules_kiln rule reference" "$bin/docs/defs_doc.textproto" "$bin/docs/extensions_doc.textproto")
if [ "${1:-}" = "--check" ]; then
    diff -u docs/rules.md <(printf '%s\n' "$generated") && echo "docs/rules.md is up to date"
else
    printf '%s\n' "$generated" >docs/rules.md
    echo "wrote docs/rules.md"
fi

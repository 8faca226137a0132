# docs/rules.md is what the rules' docstrings generate (starlark_doc_extract).
suite_docs() {
    check "docs: docs/rules.md matches the docstrings (docs/update.sh --check)" \
        env KILN_DOCS_BAZEL_ARGS="--output_base=$KILN_WORK/ob-docs" docs/update.sh --check
}

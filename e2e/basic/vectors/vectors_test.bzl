"""The Starlark side of the shared validation vectors (tools/testdata/validation.json).

The analysis-time checks of rules/private/utils.bzl must accept exactly what
the tools accept: every `valid` value passes, every `invalid` one is refused.
A disagreement fails the analysis of the test, naming the values.
"""

load("@kiln_vectors//:vectors.bzl", "VECTORS")

# A test of the private validators themselves.
# buildifier: disable=bzl-visibility
load("@rules_kiln//rules/private:utils.bzl", "env_name_error", "path_error", "port_error", "repository_error", "tag_error")

_CHECKS = {
    "env_names": env_name_error,
    "paths": path_error,
    "ports": port_error,
    # kiln-push's grammar: the registry host is required.
    "repositories": lambda r: repository_error(r, require_host = True),
    "tags": tag_error,
}

def _vectors_test_impl(ctx):
    wrong = []
    count = 0
    for kind, check in _CHECKS.items():
        for value in VECTORS[kind]["valid"]:
            count += 1
            err = check(value)
            if err:
                wrong.append("%s: %r is valid for the tools, but the rules refuse it: %s" % (kind, value, err))
        for value in VECTORS[kind]["invalid"]:
            count += 1
            if not check(value):
                wrong.append("%s: %r is invalid for the tools, but the rules accept it" % (kind, value))
    if wrong:
        fail("%s: the Starlark checks disagree with tools/testdata/validation.json:\n  %s" % (ctx.label, "\n  ".join(wrong)))
    script = ctx.actions.declare_file(ctx.label.name + ".sh")
    ctx.actions.write(script, "#!/bin/sh\necho '%d validation vectors agree with the tools'\n" % count, is_executable = True)
    return [DefaultInfo(executable = script)]

vectors_test = rule(
    implementation = _vectors_test_impl,
    test = True,
    doc = "Checks the analysis-time validators against the shared validation vectors (at analysis).",
)

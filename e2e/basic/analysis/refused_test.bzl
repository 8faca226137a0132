"""refused_test: an analysis test that its target fails analysis with a message holding every given string."""

load("@bazel_skylib//lib:unittest.bzl", "analysistest", "asserts")

def _refused_test_impl(ctx):
    env = analysistest.begin(ctx)
    for message in ctx.attr.messages:
        asserts.expect_failure(env, message)
    return analysistest.end(env)

refused_test = analysistest.make(
    _refused_test_impl,
    expect_failure = True,
    attrs = {
        "messages": attr.string_list(
            doc = "Strings the analysis failure must contain (target, attribute, value).",
            mandatory = True,
        ),
    },
    doc = "Passes when `target_under_test` fails analysis with an error containing every one of `messages`.",
)

"""A custom rule built on rules_kiln's reuse API, as rules_docker users wrote them."""

load("@rules_kiln//rules:defs.bzl", "container")

def _custom_image_impl(ctx):
    greeting = ctx.actions.declare_file(ctx.label.name + ".greeting")
    ctx.actions.write(greeting, ctx.attr.greeting + "\n")
    return container.image.implementation(
        ctx,
        cmd = ["/bin/cat", "/etc/greeting"],
        env = {"GREETING": ctx.attr.greeting},
        file_map = {"/etc/greeting": greeting},
    )

custom_image = rule(
    implementation = _custom_image_impl,
    doc = "container_image plus a greeting file, through container.image.implementation.",
    attrs = dict(container.image.attrs, greeting = attr.string(doc = "Written to /etc/greeting and GREETING.")),
    outputs = container.image.outputs,
    executable = True,
    toolchains = container.image.toolchains,
)

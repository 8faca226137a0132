"""Public API: images, and the rules_docker reuse API (`container.image.*`)."""

load(
    "//rules/private:image.bzl",
    _IMAGE_ATTRS = "IMAGE_ATTRS",
    _IMAGE_OUTPUTS = "IMAGE_OUTPUTS",
    _IMAGE_TOOLCHAINS = "IMAGE_TOOLCHAINS",
    _container_image = "container_image",
    _container_image_ = "container_image_",
    _image_implementation = "image_implementation",
)

container_image = _container_image
container_image_ = _container_image_

# As rules_docker's `container`: attrs, outputs and implementation of
# container_image, for custom rules built on it (also pass `toolchains`).
container = struct(
    image = struct(
        attrs = _IMAGE_ATTRS,
        outputs = _IMAGE_OUTPUTS,
        implementation = _image_implementation,
        toolchains = _IMAGE_TOOLCHAINS,
    ),
)

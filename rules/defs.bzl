"""rules_kiln public API. Load everything from here.

    load("@rules_kiln//rules:defs.bzl", "container_image", "service_image")
"""

load(":base.bzl", _static_base = "static_base")
load(":image.bzl", _container = "container", _container_image = "container_image", _container_image_ = "container_image_")
load(":index.bzl", _image_index = "image_index")
load(":layer.bzl", _container_layer = "container_layer")
load(":load.bzl", _image_load = "image_load")
load(":providers.bzl", _KilnBlobSetInfo = "KilnBlobSetInfo", _KilnImageInfo = "KilnImageInfo", _KilnLayerInfo = "KilnLayerInfo", _KilnLayoutInfo = "KilnLayoutInfo")
load(":push.bzl", _KilnPushInfo = "KilnPushInfo", _image_push = "image_push", _image_release = "image_release")
load(":service.bzl", _platform_binary = "platform_binary", _service_image = "service_image")
load(":test.bzl", _image_test = "image_test")

container = _container
container_image = _container_image
container_image_ = _container_image_
container_layer = _container_layer
image_index = _image_index
image_load = _image_load
image_push = _image_push
image_test = _image_test
image_release = _image_release
platform_binary = _platform_binary
service_image = _service_image
static_base = _static_base
KilnBlobSetInfo = _KilnBlobSetInfo
KilnImageInfo = _KilnImageInfo
KilnLayerInfo = _KilnLayerInfo

# The same provider as KilnBlobSetInfo, under the name rules_kiln 0.1 gave it.
KilnLayoutInfo = _KilnLayoutInfo
KilnPushInfo = _KilnPushInfo

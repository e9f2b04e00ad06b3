"""torchvision VGG state dicts -> jaxviz's Flax parameters: the VGG weight table.

Needs no torch. The weight table is explicit: every torchvision key is paired with one flat
Flax key and one transform; `jaxviz_convert.torch_weights` checks a state dict
against it exactly (no missing, unexpected or wrong-shaped keys) before
anything is written.

Transforms:
  * conv weight (O, I, kh, kw) -> HWIO kernel.
  * linear weight (out, in) -> (in, out) kernel.
  * fc6 additionally reorders its 25088 inputs: torchvision flattens pool5 as
    NCHW (index c*49 + h*7 + w) while the Flax model flattens NHWC
    (index h*7*512 + w*512 + c).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxviz import layers as layers_lib
from jaxviz_convert import published, rows

# torchvision's classifier indices: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
CLASSIFIER_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}
POOL5_SHAPE = (512, 7, 7)  # (C, H, W) of the tensor torchvision flattens before fc6

# torchvision's `VGG*_Weights.IMAGENET1K_V1.url` (the tests hold them equal).
IMAGENET_URLS = {
    "vgg11": "https://download.pytorch.org/models/vgg11-8a719046.pth",
    "vgg13": "https://download.pytorch.org/models/vgg13-19584684.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}


def fc6_to_kernel(weight: np.ndarray) -> np.ndarray:
  """(4096, 512*7*7) NCHW-flatten rows -> (7*7*512, 4096) NHWC-flatten kernel."""
  out_features = weight.shape[0]
  return weight.reshape(out_features, *POOL5_SHAPE).transpose(2, 3, 1, 0).reshape(
      -1, out_features)


def weight_table(arch: str = layers_lib.DEFAULT_ARCH) -> list[tuple[str, str, rows.Transform]]:
  """(torchvision key, flat Flax key, transform) for every parameter of `arch`."""
  table = []
  for layer in layers_lib.conv_layers(arch):
    table.append((f"features.{layer.index}.weight", f"{layer.name}.kernel",
                  rows.conv_to_hwio))
    table.append((f"features.{layer.index}.bias", f"{layer.name}.bias", rows.identity))
  for name, _, _ in layers_lib.CLASSIFIER:
    index = CLASSIFIER_INDEX[name]
    transform = fc6_to_kernel if name == "fc6" else rows.linear_to_kernel
    table.append((f"classifier.{index}.weight", f"{name}.kernel", transform))
    table.append((f"classifier.{index}.bias", f"{name}.bias", rows.identity))
  return table


def imagenet_categories() -> list[str]:
  """The 1000 ImageNet class names torchvision ships with its VGG weights."""
  return published.imagenet_categories()


def download_imagenet(arch: str = layers_lib.DEFAULT_ARCH) -> Path:
  """torchvision's published ImageNet `.pth` of `arch` in torch's hub cache
  (`$TORCH_HOME/hub/checkpoints/`), downloaded there if absent."""
  return published.fetch(IMAGENET_URLS[layers_lib.check_arch(arch)], f"ImageNet {arch}",
                         "a torchvision .pth")

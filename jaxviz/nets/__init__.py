"""The networks jaxviz draws, by arch name, and their taps (no JAX here).

Conventions:
  * `ARCHS`: the VGG family (`jaxviz.layers`, `jaxviz.vgg`) and the field's
    canonical models: lucent's InceptionV1 (lucid's "inception5h"),
    torchvision's GoogLeNet and ResNet-50. Each of the latter has a table
    module `jaxviz.nets.<arch>_table` (its taps, its explicit parameter table,
    what each tap needs, its input normalisation; pure Python, so that
    `jaxviz layers --arch` needs no JAX) and a network module
    `jaxviz.nets.<arch>` (Flax, and the reference's initialisation).
  * A tap is a `jaxviz.layers.Layer`, addressed by the reference's own name
    (lucent's module names for inceptionv1, torchvision's module paths for
    googlenet and resnet50, or lucent's spelling of those, "layer3_2") or by
    its index in `taps(arch)`.
  * What a name reads: on VGG a conv layer is read after its ReLU unless
    `pre_relu` (the write-up's reading, SPEC §1); on the other networks every
    tap reads exactly what its name says (they name their pre-ReLU outputs
    themselves, e.g. `mixed4a_3x3_pre_relu_conv`, `layer3.2.bn3`), so
    `pre_relu` is refused there.
  * A dense tap (the logits) is read as a 1x1 map per class: a class's "mean"
    is its logit, and rendering it maximises that logit.
"""

from __future__ import annotations

import difflib
import importlib
import re

from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError

VGG_ARCHS = tuple(layers_lib.ARCH_CONFIGS)
CANONICAL_ARCHS = ("inceptionv1", "googlenet", "resnet50")
ARCHS = VGG_ARCHS + CANONICAL_ARCHS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def check_arch(arch: str) -> str:
  if arch not in ARCHS:
    raise JaxvizError(f"unknown architecture {arch!r}; known: {', '.join(ARCHS)}")
  return arch


def is_vgg(arch: str) -> bool:
  return check_arch(arch) in VGG_ARCHS


def table(arch: str):
  """The table module of a canonical arch (`jaxviz.nets.<arch>_table`)."""
  if is_vgg(arch):
    raise JaxvizError(f"{arch} is described by jaxviz.layers, not a net table")
  return importlib.import_module(f"jaxviz.nets.{arch}_table")


def taps(arch: str) -> tuple[layers_lib.Layer, ...]:
  """Every activation of `arch` a user may address, in network order."""
  return layers_lib.feature_layers(arch) if is_vgg(arch) else table(arch).taps()


def trunk(arch: str) -> tuple[layers_lib.Layer, ...]:
  """The taps every path from the input to the logits passes through, in network order:
  VGG's convs (read after their ReLU, as `read_tap` reads them), the canonical nets' stem
  ReLUs and block outputs (`<arch>_table.trunk()`)."""
  if is_vgg(arch):
    return layers_lib.conv_layers(arch)
  return tuple(resolve_tap(name, arch) for name in table(arch).trunk())


def same_channel_means(tap: layers_lib.Layer, arch: str) -> str | None:
  """The trunk tap whose channel means `tap`'s are (resnet50's `layer3` is `layer3.5`'s
  output; an average pool over the last block is that block's means), or None."""
  return None if is_vgg(arch) else table(arch).SAME_CHANNEL_MEANS.get(tap.name)


def normalisation(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
  """(mean, std): `(rgb - mean) / std`, rgb in [0, 1], is what the reference is fed."""
  if is_vgg(arch):
    return IMAGENET_MEAN, IMAGENET_STD
  module = table(arch)
  return tuple(module.MEAN), tuple(module.STD)


def num_classes(arch: str) -> int:
  return 1000 if is_vgg(arch) else table(arch).NUM_CLASSES


def resolve_tap(spec, arch: str) -> layers_lib.Layer:
  """`24`, `conv5_1`, `features.24` (VGG) or `mixed4a`, `layer3.2` (the reference's
  names) or a tap index -> the tap.

  Raises:
    JaxvizError: one line, naming the nearest taps when `spec` matches none.
  """
  if isinstance(spec, layers_lib.Layer):
    return spec
  if is_vgg(arch):
    return layers_lib.resolve_layer(spec, arch)
  all_taps = taps(arch)
  text = str(spec).strip()
  if re.fullmatch(r"\d+", text) and int(text) < len(all_taps):
    return all_taps[int(text)]
  by_name = {tap.name: tap for tap in all_taps}
  # lucent addresses a torchvision module path with "_" for "." ("layer3_2").
  by_lucent_name = {tap.name.replace(".", "_"): tap for tap in all_taps}
  if text in by_name or text in by_lucent_name:
    return by_name.get(text) or by_lucent_name[text]
  nearest = difflib.get_close_matches(text, list(by_name), n=5, cutoff=0.5)
  hint = f"nearest: {', '.join(nearest)}" if nearest else f"`jaxviz layers --arch {arch}` lists them"
  raise JaxvizError(f"unknown tap {text!r} for {arch} ({len(all_taps)} taps; {hint})")


def read_tap(layer: layers_lib.Layer, arch: str, pre_relu: bool = False) -> layers_lib.Layer:
  """The tap whose output `layer` means (see the module docstring)."""
  if is_vgg(arch):
    return layers_lib.read_layer(layer, arch, pre_relu)
  if pre_relu:
    raise JaxvizError(f"pre-ReLU reading is for VGG's conv layers; {arch} names its pre-ReLU "
                      f"outputs as taps (see `jaxviz layers --arch {arch}`)")
  return layer


def describe_tap(layer: layers_lib.Layer, arch: str) -> str:
  """How outputs name a tap: `layer 24` on VGG, `tap 57` elsewhere."""
  return f"{'layer' if is_vgg(arch) else 'tap'} {layer.index}"

"""The VGG family's layers, addressed as the write-up and torchvision do.

Conventions:
  * A layer's `index` is its position in torchvision's `vgg*().features`
    (VGG16: 0..30).
  * What "layer L" reads (SPEC §1): for a conv layer, its output *after* the
    ReLU that follows it, because the write-up's forward hook stored the conv
    module's output and torchvision's `ReLU(inplace=True)` then overwrote it
    (its layer 24 is relu5_1's output). `pre_relu=True` reads the raw conv
    output instead. Pool and ReLU layers read their own output either way.
  * The same holds for a name in an objective (`objectives.Channel("conv3_1")`
    reads relu3_1's output), in every entry point; `conv3_1_pre_relu` names the
    raw conv output there (`named_module`).
  * Names follow the usual Caffe/VGG paper scheme: `conv{block}_{i}`,
    `relu{block}_{i}`, `pool{block}`. `features.N` and plain `N` also work.
  * The classifier (fc6, fc7, fc8) is not in this table; see `jaxviz.vgg`.
"""

from __future__ import annotations

import dataclasses
import re
from jaxviz.errors import JaxvizError

# torchvision's `cfgs`: output channels of each 3x3 conv, "M" for a 2x2 max pool.
ARCH_CONFIGS: dict[str, tuple[int | str, ...]] = {
    "vgg11": (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg13": (64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"),
    "vgg16": (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
              512, 512, 512, "M"),
    "vgg19": (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512,
              "M", 512, 512, 512, 512, "M"),
}
DEFAULT_ARCH = "vgg16"

# The classifier behind `features`: (name, input features, output features).
# fc6's input is pool5 (512 x 7 x 7 after torchvision's adaptive average pool).
CLASSIFIER = (("fc6", 512 * 7 * 7, 4096), ("fc7", 4096, 4096), ("fc8", 4096, 1000))

# VGG's kinds are "conv", "relu" and "pool"; the other networks' taps add
# "norm" (LRN or batch norm), "concat", "add", "block" and "dense".
LayerKind = str

# One strided (or shrinking) op on the way to a tap: (kernel, stride, padding on
# each side, ceil_mode), as torch sizes its output. An asymmetric pad (lucent's
# TF-style "SAME") is given as its total over 2, ceil_mode=False, which sizes alike.
Shrink = tuple[int, int, float, bool]
VGG_POOL: Shrink = (2, 2, 0, False)


@dataclasses.dataclass(frozen=True)
class Layer:
  """One module of `features`.

  Attributes:
    index: position in torchvision's `features` (0-based).
    name: `conv5_1`, `relu5_1`, `pool5`, ...
    kind: "conv", "relu" or "pool".
    channels: number of feature maps in this layer's output.
    pools_before: 2x2 max pools applied up to and including this layer (VGG;
      0 for other networks, whose taps give `shrinks`).
    shrinks: the strided ops up to and including this layer (`Shrink`); VGG's
      are its pools, so an input of side s gives `s // 2**pools_before`.
    what: for taps whose reading needs saying (a torch hook on the module of
      that name would read something else), one line in words; else "".
  """

  index: int
  name: str
  kind: LayerKind
  channels: int
  pools_before: int = 0
  shrinks: tuple[Shrink, ...] = ()
  what: str = ""

  def output_side(self, input_side: int) -> int:
    """The side of this layer's output for a square input of `input_side` (1 for a
    dense tap, read as a 1x1 map); 0 or less when the input is too small."""
    side = input_side
    for kernel, stride, padding, ceil in self.shrinks:
      span = side + int(2 * padding) - kernel
      if span < 0:
        return 0
      side = (-(-span // stride) if ceil else span // stride) + 1
    return 1 if self.kind == "dense" else side

  @property
  def min_input_side(self) -> int:
    """Smallest input side for which this layer's output is at least 1x1."""
    side = 1
    while self.output_side(side) < 1:
      side += 1
    return side


def check_arch(arch: str) -> str:
  if arch not in ARCH_CONFIGS:
    raise JaxvizError(f"unknown architecture {arch!r}; known: {', '.join(ARCH_CONFIGS)}")
  return arch


def feature_layers(arch: str = DEFAULT_ARCH) -> tuple[Layer, ...]:
  """All layers of `features` for `arch`, in order (VGG16: 31 layers)."""
  layers: list[Layer] = []
  block, conv_in_block, pools, channels = 1, 0, 0, 3
  for entry in ARCH_CONFIGS[check_arch(arch)]:
    if entry == "M":
      pools += 1
      layers.append(Layer(len(layers), f"pool{block}", "pool", channels, pools,
                          (VGG_POOL,) * pools))
      block, conv_in_block = block + 1, 0
    else:
      conv_in_block += 1
      channels = int(entry)
      suffix = f"{block}_{conv_in_block}"
      layers.append(Layer(len(layers), f"conv{suffix}", "conv", channels, pools,
                          (VGG_POOL,) * pools))
      layers.append(Layer(len(layers), f"relu{suffix}", "relu", channels, pools,
                          (VGG_POOL,) * pools))
  return tuple(layers)


def conv_layers(arch: str = DEFAULT_ARCH) -> tuple[Layer, ...]:
  return tuple(layer for layer in feature_layers(arch) if layer.kind == "conv")


def read_layer(layer: Layer, arch: str = DEFAULT_ARCH, pre_relu: bool = False) -> Layer:
  """The module whose output "layer L" means: a conv layer's ReLU unless `pre_relu`.

  Raises:
    JaxvizError: when `pre_relu` is asked of a layer that is not a conv.
  """
  if layer.kind != "conv":
    if pre_relu:
      raise JaxvizError(f"pre-ReLU reading is for conv layers; layer {layer.index} "
                        f"({layer.name}) is a {layer.kind} layer")
    return layer
  return layer if pre_relu else feature_layers(arch)[layer.index + 1]


PRE_RELU_SUFFIX = "_pre_relu"


def named_module(name: str, arch: str = DEFAULT_ARCH) -> Layer | None:
  """The module whose output `name` means in an objective: a conv layer's name is read
  after its ReLU, as the write-up read it (`read_layer`); `<conv>_pre_relu` is the raw
  conv output; a ReLU or pool is its own output. None for any other name (the
  classifier's outputs, which are not in this table)."""
  by_name = {layer.name: layer for layer in feature_layers(arch)}
  raw = name.removesuffix(PRE_RELU_SUFFIX)
  if raw != name:
    layer = by_name.get(raw)
    return layer if layer is not None and layer.kind == "conv" else None
  layer = by_name.get(name)
  return None if layer is None else read_layer(layer, arch)


def _valid_list(layers: tuple[Layer, ...]) -> str:
  return ", ".join(f"{layer.index} ({layer.name})" for layer in layers)


def resolve_layer(spec: str | int, arch: str = DEFAULT_ARCH) -> Layer:
  """Parses `24`, `conv5_1`, `features.24` (or a Layer) into a Layer.

  Raises:
    JaxvizError: naming every valid layer when `spec` matches none.
  """
  if isinstance(spec, Layer):
    return spec
  layers = feature_layers(arch)
  text = str(spec).strip().lower()
  match = re.fullmatch(r"(?:features\.)?(\d+)", text)
  if match:
    index = int(match.group(1))
    if index < len(layers):
      return layers[index]
  for layer in layers:
    if layer.name == text:
      return layer
  raise JaxvizError(f"unknown layer {spec!r} for {arch}; valid layers: {_valid_list(layers)}")


def parse_maps(spec: str, layer: Layer) -> list[int]:
  """`271,15`, `0:16`, `:8`, `500:`, `all` (or a mix) -> map indices, duplicates dropped.

  Ranges are half-open like Python slices. Every index must be < layer.channels.
  """
  text = str(spec).replace(" ", "")
  maps: list[int] = []
  for token in text.split(","):
    if token == "all":
      maps.extend(range(layer.channels))
      continue
    match = re.fullmatch(r"(\d*):(\d*)|(\d+)", token)
    if not match:
      raise JaxvizError(f"cannot read --maps {spec!r}: use indices and ranges like "
                        "'271,15', '0:16' or 'all'")
    if match.group(3) is not None:
      maps.append(int(match.group(3)))
    else:
      start = int(match.group(1) or 0)
      stop = int(match.group(2)) if match.group(2) else layer.channels
      if stop <= start:
        raise JaxvizError(f"--maps range {token!r} is empty")
      maps.extend(range(start, stop))
  out_of_range = [m for m in maps if m >= layer.channels]
  if out_of_range:
    raise JaxvizError(f"map {out_of_range[0]} is out of range: layer {layer.index} "
                      f"({layer.name}) has {layer.channels} maps (0..{layer.channels - 1})")
  return list(dict.fromkeys(maps))

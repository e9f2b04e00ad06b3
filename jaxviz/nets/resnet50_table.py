"""torchvision's ResNet-50 (V1.5): taps and parameter table, without JAX.

Conventions:
  * A tap is named by torchvision's `named_modules()` path where that module's
    output is one thing: `conv1`, `bn1`, `relu`, `maxpool`, `layer3.2.conv1`,
    `layer3.2.bn3`, `layer3.2.downsample.0`, `layer3.2` (the block's output),
    `layer3` (its last block's), `avgpool`, `fc` (the logits, last). A
    Bottleneck's work that no single module outputs gets an explicit name:
    `layer3.2.relu1` and `layer3.2.relu2` (its first two ReLUs) and
    `layer3.2.add` (bn3 plus the identity, before the last ReLU). torchvision's
    `layer3.2.relu` is one module called three times, so it is no tap.
  * A Bottleneck adds the identity in place (`out += identity`) and its ReLU is
    in place: a torch forward hook that keeps its tensor without cloning (as
    lucent's does) reads, at `bn1`/`bn2`, the ReLU's output, at `bn3` the
    block's output, and at `relu` the last of its three calls (the block's
    output). Each such tap's `what` says so; jaxviz reads what the name says
    (`tests/test_net_resnet50.py` shows both readings on torchvision itself).
  * Taps are in the order torch's hooks fire (a module after its children);
    the named extras sit where their value is made. Kinds: "conv", "norm",
    "relu", "pool", "add", "block" (a Bottleneck, a `layerN` Sequential or a
    downsample Sequential: the output of its last part), "dense".
  * Input: ImageNet-normalised, (rgb - MEAN) / STD, as torchvision's transforms.
  * Parameters: keyed by the module path with "." before an index turned into
    "_" ("layer3_2.bn1.scale", "layer1_0.downsample_0.kernel"), HWIO conv
    kernels (no conv has a bias), batch norm as "scale", "bias", "mean", "var"
    (evaluation: running statistics), an (in, out) dense kernel; in
    torchvision's order of definition.
  * V1.5: a block that shrinks strides its 3x3 conv (conv2), not conv1.
"""

from __future__ import annotations

import functools
import sys
from typing import NamedTuple

from jaxviz.layers import Layer, Shrink
from jaxviz.nets import table_tools
from jaxviz.nets.table_tools import flax_name

ARCH = "resnet50"
NUM_CLASSES = 1000
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BN_EPS = 1e-5  # torch's BatchNorm2d default
EXPANSION = 4  # Bottleneck.expansion
FC_INPUTS = 512 * EXPANSION
MIN_SIDE = 1  # every op pads enough that a 1-px input runs to the logits

# (stage name, blocks, planes, stride of its first block): torchvision's resnet50.
STAGES = (("layer1", 3, 64, 1), ("layer2", 4, 128, 2), ("layer3", 6, 256, 2),
          ("layer4", 3, 512, 2))

STEM_CONV: Shrink = (7, 2, 3, False)
STEM_POOL: Shrink = (3, 2, 1, False)
# AdaptiveAvgPool2d((1, 1)): every side becomes 1 (a 1-wide window at a stride no input
# reaches).
AVGPOOL_SHRINK: Shrink = (1, sys.maxsize, 0, False)


class Bottleneck(NamedTuple):
  """One torchvision Bottleneck: 1x1 (inputs -> width), 3x3/stride (width -> width),
  1x1 (width -> width * 4), plus a 1x1/stride conv and batch norm on the identity
  when the shape changes."""

  path: str  # "layer3.2"
  inputs: int
  width: int
  stride: int

  @property
  def outputs(self) -> int:
    return self.width * EXPANSION

  @property
  def has_downsample(self) -> bool:
    return self.stride != 1 or self.inputs != self.outputs

  @property
  def module(self) -> str:
    return flax_name(self.path)

  def convs(self) -> tuple[tuple[str, int, int, int, int, int], ...]:
    """(name below the block, inputs, outputs, kernel, stride, padding) per conv."""
    convs = [("conv1", self.inputs, self.width, 1, 1, 0),
             ("conv2", self.width, self.width, 3, self.stride, 1),
             ("conv3", self.width, self.outputs, 1, 1, 0)]
    if self.has_downsample:
      convs.append(("downsample.0", self.inputs, self.outputs, 1, self.stride, 0))
    return tuple(convs)


def blocks() -> tuple[Bottleneck, ...]:
  """Every Bottleneck in network order."""
  out, inputs = [], 64
  for stage, count, width, stride in STAGES:
    for b in range(count):
      block = Bottleneck(f"{stage}.{b}", inputs, width, stride if b == 0 else 1)
      out.append(block)
      inputs = block.outputs
  return tuple(out)


def trunk() -> tuple[str, ...]:
  """The taps every path from the input to the logits passes through, read after their
  ReLU, in order: the stem's ReLU and each Bottleneck's output (the max pool after the
  stem downsamples it)."""
  return ("relu",) + tuple(block.path for block in blocks())


# Taps whose channel means are a trunk tap's: `layerN` is its last block's output, and
# avgpool is layer4's spatial mean.
SAME_CHANNEL_MEANS = {**{stage: f"{stage}.{count - 1}" for stage, count, _, _ in STAGES},
                      "avgpool": "layer4.2"}


def _hook_note(reads: str) -> str:
  return f"a torch hook that keeps this tensor uncloned (lucent's) reads {reads} (in-place op)"


@functools.cache
def taps() -> tuple[Layer, ...]:
  """Every tap in hook order, the logits last (see the module docstring)."""
  rows: list[Layer] = []

  def add(name: str, kind: str, channels: int, shrinks: tuple[Shrink, ...],
          what: str = "") -> None:
    rows.append(Layer(len(rows), name, kind, channels, 0, shrinks, what))

  stem = (STEM_CONV,)
  add("conv1", "conv", 64, stem)
  add("bn1", "norm", 64, stem, "pre-ReLU; " + _hook_note("relu"))
  add("relu", "relu", 64, stem)
  shrinks = stem + (STEM_POOL,)
  add("maxpool", "pool", 64, shrinks)
  for block in blocks():
    p = block.path
    inner = shrinks + (((3, block.stride, 1, False),) if block.stride != 1 else ())
    add(f"{p}.conv1", "conv", block.width, shrinks)
    add(f"{p}.bn1", "norm", block.width, shrinks, "pre-ReLU; " + _hook_note(f"{p}.relu1"))
    add(f"{p}.relu1", "relu", block.width, shrinks, f"first call of torch's {p}.relu")
    add(f"{p}.conv2", "conv", block.width, inner)
    add(f"{p}.bn2", "norm", block.width, inner, "pre-ReLU; " + _hook_note(f"{p}.relu2"))
    add(f"{p}.relu2", "relu", block.width, inner, f"second call of torch's {p}.relu")
    add(f"{p}.conv3", "conv", block.outputs, inner)
    add(f"{p}.bn3", "norm", block.outputs, inner, "before the identity is added; "
        + _hook_note(p))
    if block.has_downsample:
      outer = shrinks + (((1, block.stride, 0, False),) if block.stride != 1 else ())
      add(f"{p}.downsample.0", "conv", block.outputs, outer)
      add(f"{p}.downsample.1", "norm", block.outputs, outer)
      add(f"{p}.downsample", "block", block.outputs, outer)
    add(f"{p}.add", "add", block.outputs, inner, "bn3 + identity, before the last ReLU")
    add(p, "block", block.outputs, inner,
        f"after the last ReLU (torch's {p}.relu, hooked, reads this: its last call)")
    shrinks = inner
    stage, _, index = p.partition(".")
    if int(index) == dict((s, n) for s, n, _, _ in STAGES)[stage] - 1:
      add(stage, "block", block.outputs, shrinks)
  add("avgpool", "pool", FC_INPUTS, shrinks + (AVGPOOL_SHRINK,))
  add("fc", "dense", NUM_CLASSES, shrinks + (AVGPOOL_SHRINK,))
  return tuple(rows)


@functools.cache
def param_shapes() -> dict[str, tuple[int, ...]]:
  """The flat key -> shape table ("conv1.kernel": (7, 7, 3, 64), "bn1.scale": (64,),
  "layer1_0.conv1.kernel", ..., "fc.kernel": (2048, 1000)), in torchvision's order."""
  shapes: dict[str, tuple[int, ...]] = {}

  def norm(prefix: str, features: int) -> None:
    for leaf in ("scale", "bias", "mean", "var"):
      shapes[f"{prefix}.{leaf}"] = (features,)

  shapes["conv1.kernel"] = (7, 7, 3, 64)
  norm("bn1", 64)
  for block in blocks():
    for name, inputs, outputs, kernel, _, _ in block.convs():
      conv = flax_name(f"{block.path}.{name}")
      shapes[f"{conv}.kernel"] = (kernel, kernel, inputs, outputs)
      norm(conv.replace("conv", "bn").replace("downsample_0", "downsample_1"), outputs)
  shapes["fc.kernel"] = (FC_INPUTS, NUM_CLASSES)
  shapes["fc.bias"] = (NUM_CLASSES,)
  return shapes


def module_names() -> tuple[str, ...]:
  """The modules that hold parameters, in network order ("conv1", "bn1", "layer1_0.conv1", ...)."""
  return table_tools.module_names(param_shapes())


def needed_modules(tap: str) -> tuple[str, ...]:
  """Every conv and batch norm (and the dense layer) computed up to `tap` in hook order
  (`table_tools.needed_modules`)."""
  return table_tools.needed_modules(ARCH, taps(), tap, ("conv", "norm", "dense"))

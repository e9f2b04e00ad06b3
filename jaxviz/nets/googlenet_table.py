"""torchvision's GoogLeNet (InceptionV1) as its pretrained weights run: taps and parameter
table, without JAX.

Conventions:
  * A tap is a module of torchvision's `GoogLeNet(aux_logits=False)` under its
    `named_modules()` path: `conv1` (a BasicConv2d: conv -> batch norm -> ReLU,
    so its output is post-ReLU), `conv1.conv`, `conv1.bn` (before the ReLU),
    `maxpool1`, `inception3a`, `inception3a.branch2` (a Sequential: its last
    BasicConv2d's output), `inception3a.branch2.0`, `inception3a.branch4.0`
    (the branch's 3x3/1 max pool), ..., `avgpool`, `fc` (the logits, last).
    `dropout` is the identity in evaluation and is left out; so are the
    auxiliary heads (`aux1`, `aux2`: None in torchvision's pretrained model).
  * Taps are in the order torch's forward hooks fire: a module after its
    children (`conv1.conv`, `conv1.bn`, `conv1`), branches 1 to 4, then the
    block's concat. Kinds: "conv", "norm", "relu" (a BasicConv2d: what it
    outputs), "pool", "block" (a branch Sequential), "concat", "dense".
  * Input: `googlenet(weights=IMAGENET1K_V1)` sets `transform_input=True`, so it
    takes ImageNet-normalised x = (rgb - m) / s and first computes
    x * (s / 0.5) + (m - 0.5) / 0.5 = (rgb - 0.5) / 0.5 per channel
    (`GoogLeNet._transform_input`). MEAN = STD = 0.5 feed the network that
    same tensor directly, with no transform inside the Flax network.
  * Parameters: keyed by the module path with "." before an index turned
    into "_" ("inception3a.branch2_0.conv.kernel"), HWIO conv kernels (no
    bias: BasicConv2d's conv has none), batch norm as "scale", "bias",
    "mean", "var" (evaluation: running statistics), an (in, out) dense kernel;
    in torchvision's order of definition, which is its forward's.
  * Pools are all `ceil_mode=True`; their `Shrink`s are written as the floor-mode
    pool of the same sizes (see `ceil_pool_shrink`).
"""

from __future__ import annotations

import functools
import sys
from typing import NamedTuple

from jaxviz.layers import Layer, Shrink
from jaxviz.nets import table_tools
from jaxviz.nets.table_tools import flax_name

ARCH = "googlenet"
NUM_CLASSES = 1000
# (rgb - 0.5) / 0.5: what `_transform_input` makes of ImageNet-normalised input (see above).
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)

BN_EPS = 0.001  # BasicConv2d's BatchNorm2d(eps=0.001), not torch's default 1e-5
FC_INPUTS = 1024  # inception5b's channels, averaged to 1x1 and flattened
MIN_SIDE = 15  # torchvision's meta["min_size"]; `taps()[-1].min_input_side` agrees


class Conv(NamedTuple):
  """One BasicConv2d (conv without bias -> batch norm -> ReLU) under its torchvision path."""

  path: str
  inputs: int
  outputs: int
  kernel: int
  stride: int = 1
  padding: int = 0

  @property
  def module(self) -> str:
    """Its parameters' key prefix: "inception3a.branch2.0" -> "inception3a.branch2_0"."""
    return flax_name(self.path)


class Pool(NamedTuple):
  """A max pool, `ceil_mode=True` like every pool of torchvision's GoogLeNet."""

  path: str
  kernel: int
  stride: int
  padding: int = 0


class Block(NamedTuple):
  """One inception block, torchvision's `Inception(in_channels, ch1x1, ch3x3red, ch3x3,
  ch5x5red, ch5x5, pool_proj)`."""

  name: str
  inputs: int
  ch1x1: int
  ch3x3red: int
  ch3x3: int
  ch5x5red: int
  ch5x5: int
  pool_proj: int

  @property
  def channels(self) -> int:
    """The concat's channels: branch1, branch2, branch3, branch4, in that order."""
    return self.ch1x1 + self.ch3x3 + self.ch5x5 + self.pool_proj

  def branches(self) -> tuple[tuple[str, tuple[Conv | Pool, ...]], ...]:
    """(branch path, its modules in order). branch1 is a BasicConv2d itself, the others
    Sequentials whose children are `<branch>.0` and `<branch>.1`."""
    n = self.name
    return (
        (f"{n}.branch1", (Conv(f"{n}.branch1", self.inputs, self.ch1x1, 1),)),
        (f"{n}.branch2", (Conv(f"{n}.branch2.0", self.inputs, self.ch3x3red, 1),
                          Conv(f"{n}.branch2.1", self.ch3x3red, self.ch3x3, 3, 1, 1))),
        # torchvision's "5x5" branch is a 3x3 conv (a known bug it keeps for its
        # published weights: pytorch/vision#906).
        (f"{n}.branch3", (Conv(f"{n}.branch3.0", self.inputs, self.ch5x5red, 1),
                          Conv(f"{n}.branch3.1", self.ch5x5red, self.ch5x5, 3, 1, 1))),
        (f"{n}.branch4", (Pool(f"{n}.branch4.0", 3, 1, 1),
                          Conv(f"{n}.branch4.1", self.inputs, self.pool_proj, 1))),
    )

  def convs(self) -> tuple[Conv, ...]:
    return tuple(item for _, items in self.branches() for item in items
                 if isinstance(item, Conv))


# torchvision's GoogLeNet.__init__, in order.
LAYOUT: tuple[Conv | Pool | Block, ...] = (
    Conv("conv1", 3, 64, 7, 2, 3),
    Pool("maxpool1", 3, 2),
    Conv("conv2", 64, 64, 1),
    Conv("conv3", 64, 192, 3, 1, 1),
    Pool("maxpool2", 3, 2),
    Block("inception3a", 192, 64, 96, 128, 16, 32, 32),
    Block("inception3b", 256, 128, 128, 192, 32, 96, 64),
    Pool("maxpool3", 3, 2),
    Block("inception4a", 480, 192, 96, 208, 16, 48, 64),
    Block("inception4b", 512, 160, 112, 224, 24, 64, 64),
    Block("inception4c", 512, 128, 128, 256, 24, 64, 64),
    Block("inception4d", 512, 112, 144, 288, 32, 64, 64),
    Block("inception4e", 528, 256, 160, 320, 32, 128, 128),
    Pool("maxpool4", 2, 2),
    Block("inception5a", 832, 256, 160, 320, 32, 128, 128),
    Block("inception5b", 832, 384, 192, 384, 48, 128, 128),
)

# AdaptiveAvgPool2d((1, 1)): every side becomes 1, i.e. a 1-wide window at a stride no
# input reaches.
AVGPOOL_SHRINK: Shrink = (1, sys.maxsize, 0, False)


def ceil_pool_side(side: int, kernel: int, stride: int, padding: int) -> int:
  """torch's output side of a `ceil_mode=True` pool (ATen's pooling_output_shape): a
  window may hang over the end, but none may start past the input and left padding."""
  out = (side + 2 * padding - kernel + stride - 1) // stride + 1
  if (out - 1) * stride >= side + padding:
    out -= 1
  return out


def ceil_pool_shrink(pool: Pool) -> Shrink | None:
  """The pool's `Shrink` (None if it keeps the side): the floor-mode pool with stride - 1
  more padding, which sizes exactly as `ceil_pool_side` when kernel > padding + stride - 1
  (then no window starts past the input), as for every pool here.

  Not (kernel, stride, padding, True): `Layer.output_side` calls an input smaller than
  the kernel too small, where torch lets the window overhang (a 3x3/2 ceil pool takes a
  2-px input to 1 px); with that the network's smallest input would be 31 px, not 15.
  """
  if pool.stride == 1 and 2 * pool.padding == pool.kernel - 1:
    return None
  return (pool.kernel, pool.stride, pool.padding + (pool.stride - 1) / 2, False)


def conv_shrink(conv: Conv) -> Shrink | None:
  """The conv's `Shrink`, None when it keeps the side (stride 1, "same" padding)."""
  if conv.stride == 1 and 2 * conv.padding == conv.kernel - 1:
    return None
  return (conv.kernel, conv.stride, conv.padding, False)


def basic_convs() -> tuple[Conv, ...]:
  """Every BasicConv2d, in torchvision's order of definition (its forward's)."""
  convs: list[Conv] = []
  for item in LAYOUT:
    if isinstance(item, Conv):
      convs.append(item)
    elif isinstance(item, Block):
      convs.extend(item.convs())
  return tuple(convs)


def trunk() -> tuple[str, ...]:
  """The taps every path from the input to the logits passes through, read after their
  ReLU, in order: the stem's BasicConv2ds and each block's concat (not the max pools,
  which downsample the tap before them)."""
  return tuple(item.path if isinstance(item, Conv) else item.name for item in LAYOUT
               if not isinstance(item, Pool))


# Taps whose channel means are a trunk tap's (the average pool of the last block).
SAME_CHANNEL_MEANS = {"avgpool": "inception5b"}


@functools.cache
def taps() -> tuple[Layer, ...]:
  """Every module torch can hook, in hook order, the logits last (222 taps)."""
  built = table_tools.TapRows()
  add = built.add

  def add_conv(conv: Conv) -> None:
    add(f"{conv.path}.conv", "conv", conv.outputs, conv_shrink(conv))
    # BasicConv2d's F.relu(x, inplace=True) overwrites the batch norm's output tensor.
    add(f"{conv.path}.bn", "norm", conv.outputs,
        what=f"pre-ReLU; a hook keeping the tensor uncloned (lucent's) reads {conv.path}")
    add(conv.path, "relu", conv.outputs)

  channels = 3
  for item in LAYOUT:
    if isinstance(item, Conv):
      add_conv(item)
      channels = item.outputs
    elif isinstance(item, Pool):
      add(item.path, "pool", channels, ceil_pool_shrink(item))
    else:
      for branch, modules in item.branches():
        for module in modules:
          if isinstance(module, Conv):
            add_conv(module)
          else:
            add(module.path, "pool", channels, ceil_pool_shrink(module))
        if branch != modules[-1].path:  # a Sequential: its output is its last module's
          add(branch, "block", modules[-1].outputs)
      channels = item.channels
      add(item.name, "concat", channels)
  add("avgpool", "pool", channels, AVGPOOL_SHRINK)
  add("fc", "dense", NUM_CLASSES)
  return tuple(built.rows)


@functools.cache
def param_shapes() -> dict[str, tuple[int, ...]]:
  """The flat key -> shape table ("conv1.conv.kernel": (7, 7, 3, 64), "conv1.bn.scale":
  (64,), ..., "fc.kernel": (1024, 1000)), in network order."""
  shapes: dict[str, tuple[int, ...]] = {}
  for conv in basic_convs():
    shapes[f"{conv.module}.conv.kernel"] = (conv.kernel, conv.kernel, conv.inputs, conv.outputs)
    for leaf in ("scale", "bias", "mean", "var"):
      shapes[f"{conv.module}.bn.{leaf}"] = (conv.outputs,)
  shapes["fc.kernel"] = (FC_INPUTS, NUM_CLASSES)
  shapes["fc.bias"] = (NUM_CLASSES,)
  return shapes


def module_names() -> tuple[str, ...]:
  """The modules that hold parameters, in network order ("conv1.conv", "conv1.bn", ...)."""
  return table_tools.module_names(param_shapes())


def needed_modules(tap: str) -> tuple[str, ...]:
  """Every conv, batch norm (and the dense layer) computed up to `tap` in hook order
  (`table_tools.needed_modules`)."""
  return table_tools.needed_modules(ARCH, taps(), tap, ("conv", "norm", "dense"))

"""lucent's InceptionV1 (lucid's "inception5h"): its taps and parameter table, without JAX.

Conventions:
  * A tap is what lucent addresses: a child module of lucent's `InceptionV1`,
    under its attribute name (`render_vis(model, "mixed4a:476")` hooks
    `model._modules` by name). Each `*_pre_relu_conv` is a conv's raw output,
    the name without the suffix is its ReLU's output (`conv2d0`,
    `mixed4a_3x3`), `mixedNx_pool` is the block's 3x3 max pool and `mixedNx`
    the block's concat.
  * Taps are in the order lucent's `forward` computes them (within a block:
    the three 1x1 convs on the input, the pool, their ReLUs, the pool's 1x1,
    the 3x3 and 5x5 convs, their ReLUs, the concat).
  * Not taps: the two local response norms and the final average pool are
    functional calls in lucent's forward (no module, so no name lucent can
    hook); `softmax2` is a module but its softmax comes after the logits, which
    are the last tap (`softmax2_pre_activation_matmul`, 1008 classes).
  * The logits exist only where lucent's 7x7 average pool and reshape to
    (-1, 1024) make sense: mixed5b exactly 7x7, i.e. inputs of 224..255 px.
  * Parameters: HWIO conv kernels, (in, out) dense kernel, keyed by lucent's
    module names ("mixed4a_3x3_pre_relu_conv.kernel"), in network order.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from jaxviz.layers import Layer, Shrink
from jaxviz.nets import table_tools

ARCH = "inceptionv1"
NUM_CLASSES = 1008  # the outputs of lucid's inception5h graph (lucent ships no class names)
# lucent's render_vis feeds InceptionV1 `x * 255 - 117` (optvis.transform.preprocess_inceptionv1:
# the TF original took [-117, 138]); that is (x - 117/255) / (1/255).
MEAN = (117 / 255,) * 3
STD = (1 / 255,) * 3

LOGITS = "softmax2_pre_activation_matmul"

# lucent's local response norms (F.local_response_norm after maxpool0 and after conv2d2).
LRN_SIZE = 9
LRN_ALPHA = 9.99999974738e-05
LRN_BETA = 0.5
LRN_K = 1.0


class Mixed(NamedTuple):
  """One inception block: output channels of each conv (lucent's names, without the
  block prefix and `_pre_relu_conv`)."""

  name: str
  c1x1: int
  c3x3_bottleneck: int
  c3x3: int
  c5x5_bottleneck: int
  c5x5: int
  pool_reduce: int

  @property
  def channels(self) -> int:
    """The concat's channels: 1x1, 3x3, 5x5, pool_reduce, in that order."""
    return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_reduce


MIXED = (
    Mixed("mixed3a", 64, 96, 128, 16, 32, 32),
    Mixed("mixed3b", 128, 128, 192, 32, 96, 64),
    Mixed("mixed4a", 192, 96, 204, 16, 48, 64),  # 508 channels: lucid's, not the paper's 512
    Mixed("mixed4b", 160, 112, 224, 24, 64, 64),
    Mixed("mixed4c", 128, 128, 256, 24, 64, 64),
    Mixed("mixed4d", 112, 144, 288, 32, 64, 64),
    Mixed("mixed4e", 256, 160, 320, 32, 128, 128),
    Mixed("mixed5a", 256, 160, 320, 48, 128, 128),
    Mixed("mixed5b", 384, 192, 384, 48, 128, 128),
)
# The stride-2 max pools between blocks, by the block they follow.
POOL_AFTER = {"mixed3b": "maxpool4", "mixed4e": "maxpool10"}

# lucent pads with fixed numbers, not a "SAME" recomputed per input: the 7x7/2 conv
# gets (2, 3) zeros, each 3x3/2 max pool (0, 1) of -inf (given as the per-side
# average, which sizes alike), the final average pool none.
CONV0_SHRINK: Shrink = (7, 2, 2.5, False)
POOL_SHRINK: Shrink = (3, 2, 0.5, False)
AVGPOOL_SHRINK: Shrink = (7, 1, 0, False)
LOGITS_SIDE = 7  # mixed5b's side where the logits are defined


def block_taps(block: Mixed) -> tuple[tuple[str, str, int | None], ...]:
  """(name, kind, channels) of one block's taps, in lucent's forward order (None: the
  block's input channels, which the pool keeps)."""
  n = block.name
  return (
      (f"{n}_1x1_pre_relu_conv", "conv", block.c1x1),
      (f"{n}_3x3_bottleneck_pre_relu_conv", "conv", block.c3x3_bottleneck),
      (f"{n}_5x5_bottleneck_pre_relu_conv", "conv", block.c5x5_bottleneck),
      (f"{n}_pool", "pool", None),
      (f"{n}_1x1", "relu", block.c1x1),
      (f"{n}_3x3_bottleneck", "relu", block.c3x3_bottleneck),
      (f"{n}_5x5_bottleneck", "relu", block.c5x5_bottleneck),
      (f"{n}_pool_reduce_pre_relu_conv", "conv", block.pool_reduce),
      (f"{n}_3x3_pre_relu_conv", "conv", block.c3x3),
      (f"{n}_5x5_pre_relu_conv", "conv", block.c5x5),
      (f"{n}_pool_reduce", "relu", block.pool_reduce),
      (f"{n}_3x3", "relu", block.c3x3),
      (f"{n}_5x5", "relu", block.c5x5),
      (n, "concat", block.channels),
  )


@functools.cache
def taps() -> tuple[Layer, ...]:
  """Every module lucent can hook, in forward order, and the logits last (137 taps)."""
  built = table_tools.TapRows()
  add = built.add

  add("conv2d0_pre_relu_conv", "conv", 64, CONV0_SHRINK)
  add("conv2d0", "relu", 64)
  add("maxpool0", "pool", 64, POOL_SHRINK,
      what="max pool of conv2d0, before localresponsenorm0 (which conv2d1 reads)")
  add("conv2d1_pre_relu_conv", "conv", 64)
  add("conv2d1", "relu", 64)
  add("conv2d2_pre_relu_conv", "conv", 192)
  add("conv2d2", "relu", 192)
  add("maxpool1", "pool", 192, POOL_SHRINK, what="max pool of localresponsenorm1(conv2d2)")
  channels = 192
  for block in MIXED:
    for name, kind, block_channels in block_taps(block):
      add(name, kind, channels if block_channels is None else block_channels)
    channels = block.channels
    if block.name in POOL_AFTER:
      add(POOL_AFTER[block.name], "pool", channels, POOL_SHRINK)
  add(LOGITS, "dense", NUM_CLASSES, AVGPOOL_SHRINK,
      what="logits of mixed5b's 7x7 average: inputs of 224-255 px only")
  return tuple(built.rows)


def trunk() -> tuple[str, ...]:
  """The taps every path from the input to the logits passes through, read after their
  ReLU, in order: the stem's convs and each block's concat (not the max pools, which
  downsample the tap before them)."""
  return ("conv2d0", "conv2d1", "conv2d2") + tuple(block.name for block in MIXED)


# No tap's channel means are another trunk tap's (see resnet50_table.SAME_CHANNEL_MEANS).
SAME_CHANNEL_MEANS: dict[str, str] = {}


@functools.cache
def param_shapes() -> dict[str, tuple[int, ...]]:
  """The flat key -> shape table ("conv2d0_pre_relu_conv.kernel": (7, 7, 3, 64), ...),
  in network order (lucent's order of definition, which is its forward's)."""
  shapes: dict[str, tuple[int, ...]] = {}

  def conv(name: str, size: int, inputs: int, outputs: int) -> None:
    shapes[f"{name}.kernel"] = (size, size, inputs, outputs)
    shapes[f"{name}.bias"] = (outputs,)

  conv("conv2d0_pre_relu_conv", 7, 3, 64)
  conv("conv2d1_pre_relu_conv", 1, 64, 64)
  conv("conv2d2_pre_relu_conv", 3, 64, 192)
  channels = 192
  for b in MIXED:
    conv(f"{b.name}_1x1_pre_relu_conv", 1, channels, b.c1x1)
    conv(f"{b.name}_3x3_bottleneck_pre_relu_conv", 1, channels, b.c3x3_bottleneck)
    conv(f"{b.name}_5x5_bottleneck_pre_relu_conv", 1, channels, b.c5x5_bottleneck)
    conv(f"{b.name}_pool_reduce_pre_relu_conv", 1, channels, b.pool_reduce)
    conv(f"{b.name}_3x3_pre_relu_conv", 3, b.c3x3_bottleneck, b.c3x3)
    conv(f"{b.name}_5x5_pre_relu_conv", 5, b.c5x5_bottleneck, b.c5x5)
    channels = b.channels
  shapes[f"{LOGITS}.kernel"] = (channels, NUM_CLASSES)
  shapes[f"{LOGITS}.bias"] = (NUM_CLASSES,)
  return shapes


def module_names() -> tuple[str, ...]:
  """The modules that hold parameters, in network order."""
  return table_tools.module_names(param_shapes())


def needed_modules(tap: str) -> tuple[str, ...]:
  """Every conv (and the dense layer) computed up to `tap` in forward order
  (`table_tools.needed_modules`; lucent's module names have no "." to turn)."""
  return table_tools.needed_modules(ARCH, taps(), tap, ("conv", "dense"))

"""torchvision's GoogLeNet in Flax, NHWC, as torchvision runs its pretrained weights.

Conventions:
  * Images are NHWC, already normalised by the table's MEAN/STD, (rgb - 0.5) / 0.5:
    exactly what torchvision's `transform_input=True` makes of ImageNet-normalised
    input (see `jaxviz.nets.googlenet_table`), so the network has no transform.
  * Taps, names, parameter table and normalisation live in
    `jaxviz.nets.googlenet_table` (no JAX there); the parameter tree is
    `unflatten_dict(param_shapes(), sep=".")`: nested as torchvision's modules
    ("inception3a" / "branch2_0" / "conv", "bn"), HWIO conv kernels, an (in, out)
    dense kernel.
  * Evaluation only: batch norm uses its running statistics, kept as parameters
    ("mean", "var") next to "scale" and "bias"; dropout is omitted. The
    auxiliary heads are not part of the network (torchvision drops them too).
  * Every max pool is torch's `ceil_mode=True`: the last window may hang over the
    edge, padded with -inf (`max_pool`).
  * `precision` is `jax.lax.Precision` for every conv and the matmul (see
    `jaxviz.vgg`).
"""

from __future__ import annotations

import math
from typing import Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.nets import blocks
from jaxviz.nets import googlenet_table as table
from jaxviz.nets.blocks import BatchNorm

Array = jax.Array
Taps = Iterator[tuple[str, Array]]

# torchvision's init_weights: conv and linear weights trunc_normal_(std=0.01, a=-2, b=2).
# Its bounds are absolute, i.e. +-200 std: torch rejects and redraws outside them, which
# never happens in practice. Not jax.random.truncated_normal: it samples the inverse CDF,
# and at +-200 std erf saturates to +-1 so that a uniform draw of exactly -1 lands on the
# bound (measured: 1 in 4e7 draws at -200 std; GoogLeNet has 6.6e6 weights). A normal
# clipped at the bounds is torch's distribution.
INIT_STD = 0.01
INIT_BOUND = 2.0


def kernel_init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
  return jnp.clip(INIT_STD * jax.random.normal(key, shape, dtype), -INIT_BOUND, INIT_BOUND)


def fc_bias_init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
  """torch's default Linear bias, which init_weights leaves: uniform +-1/sqrt(fan_in)."""
  bound = 1 / math.sqrt(table.FC_INPUTS)
  return jax.random.uniform(key, shape, dtype, -bound, bound)


# Parameters do not depend on the input side (the average pool is adaptive).
INIT_SIDE = table.MIN_SIDE


def max_pool(x: Array, kernel: int, stride: int, padding: int) -> Array:
  """(N, H, W, C) -> torch's MaxPool2d(kernel, stride, padding, ceil_mode=True).

  Padded with -inf: `padding` on the low side, on the high side as much as the
  ceil-mode windows need (`table.ceil_pool_side`). reduce_window (nn.max_pool)
  rather than a reshape-max as in `jaxviz.vgg`: windows overlap here, and its
  gradient goes to the first maximum of a window, as torch's does.
  """
  pads = []
  for side in x.shape[1:3]:
    out = table.ceil_pool_side(side, kernel, stride, padding)
    pads.append((padding, (out - 1) * stride + kernel - side - padding))
  return nn.max_pool(x, (kernel, kernel), (stride, stride), padding=tuple(pads))


class BasicConv2d(nn.Module):
  """torchvision's BasicConv2d: `conv` (no bias) and `bn`; the ReLU is the caller's, so
  that each of the three outputs is a tap."""

  spec: table.Conv
  precision: str = "default"

  def setup(self):
    c = self.spec
    self.conv = nn.Conv(c.outputs, (c.kernel, c.kernel), (c.stride, c.stride),
                        padding=((c.padding, c.padding),) * 2, use_bias=False,
                        precision=jax.lax.Precision(self.precision), kernel_init=kernel_init)
    self.bn = BatchNorm(table.BN_EPS)


class Inception(nn.Module):
  """torchvision's Inception: a BasicConv2d per conv of the block, named as torchvision's
  paths below the block ("branch1", "branch2_0", ..., "branch4_1")."""

  block: table.Block
  precision: str = "default"

  def setup(self):
    for conv in self.block.convs():
      setattr(self, conv.module.partition(".")[2], BasicConv2d(conv, self.precision))


def _basic_conv(x: Array, conv: table.Conv, module: BasicConv2d) -> Taps:
  """A BasicConv2d's three taps (`.conv`, `.bn`, itself: post-ReLU); returns the last."""
  x = module.conv(x)
  yield f"{conv.path}.conv", x
  x = module.bn(x)
  yield f"{conv.path}.bn", x
  x = nn.relu(x)
  yield conv.path, x
  return x


def _inception(x: Array, block: table.Block, module: Inception) -> Taps:
  """One block's taps in hook order (each branch, then the concat); returns the concat."""
  outputs = []
  for branch, items in block.branches():
    y = x
    for item in items:
      if isinstance(item, table.Pool):
        y = max_pool(y, item.kernel, item.stride, item.padding)
        yield item.path, y
      else:
        y = yield from _basic_conv(y, item, getattr(module, item.module.partition(".")[2]))
    if branch != items[-1].path:
      yield branch, y
    outputs.append(y)
  x = jnp.concatenate(outputs, axis=-1)
  yield block.name, x
  return x


def _taps(x: Array, make: Callable[[table.Conv | table.Block], nn.Module],
          dense: Callable[[], nn.Module]) -> Taps:
  """(tap name, activation) in torch's hook order, the logits as (N, 1, 1, classes)."""
  for item in table.LAYOUT:
    if isinstance(item, table.Pool):
      x = max_pool(x, item.kernel, item.stride, item.padding)
      yield item.path, x
    elif isinstance(item, table.Conv):
      x = yield from _basic_conv(x, item, make(item))
    else:
      x = yield from _inception(x, item, make(item))
  x = x.mean(axis=(1, 2), keepdims=True)  # AdaptiveAvgPool2d((1, 1))
  yield "avgpool", x
  x = dense()(x.reshape(x.shape[0], -1))
  yield "fc", x[:, None, None, :]


_TAP_NAMES = frozenset(layer.name for layer in table.taps())


class Network(nn.Module):
  """torchvision's GoogLeNet (evaluation, no auxiliary heads), returning every tap computed.

  Attributes:
    precision: "default" | "high" | "highest" (see `jaxviz.vgg`).
    stop_at: the last tap to compute (a name of `table.taps()`); None runs the
      whole network.
  """

  precision: str = "default"
  stop_at: str | None = None

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    """(N, H, W, 3) normalised -> {tap: (N, h, w, C)}, the logits as (N, 1, 1, 1000).

    Every input of at least 15 px runs to the logits (the average pool is adaptive).
    """
    def make(item: table.Conv | table.Block) -> nn.Module:
      if isinstance(item, table.Conv):
        return BasicConv2d(item, self.precision, name=item.module)
      return Inception(item, self.precision, name=item.name)

    def dense() -> nn.Module:
      return nn.Dense(table.NUM_CLASSES, precision=jax.lax.Precision(self.precision),
                      kernel_init=kernel_init, bias_init=fc_bias_init, name="fc")

    return blocks.taps_until(table.ARCH, _TAP_NAMES, _taps(x, make, dense), self.stop_at)


def flax_param_shapes() -> dict[str, tuple[int, ...]]:
  """The parameter table read off the Flax module (for the test)."""
  return blocks.flax_param_shapes(Network(), INIT_SIDE)


def random_module(key: Array, module: str) -> dict[str, np.ndarray]:
  """One module's parameters as torchvision's `init_weights=True` makes them, from
  `fold_in(key, the module's position)`: any set of modules is the same as those
  modules of the whole network.

  Conv kernels and the fc kernel normal(0, 0.01) (see `kernel_init`); batch norm
  weight 1, bias 0 and fresh running statistics (mean 0, var 1); the fc bias is
  torch's Linear default, uniform +-1/sqrt(1024).
  """
  shapes = table.param_shapes()
  key = blocks.module_key(key, table.module_names(), module)
  if module.endswith(".bn"):
    features = shapes[f"{module}.scale"]
    return {"scale": np.ones(features, np.float32), "bias": np.zeros(features, np.float32),
            "mean": np.zeros(features, np.float32), "var": np.ones(features, np.float32)}
  if module == "fc":
    kernel_key, bias_key = jax.random.split(key)
    return {"kernel": np.asarray(blocks.draw(kernel_init, kernel_key, shapes["fc.kernel"])),
            "bias": np.asarray(blocks.draw(fc_bias_init, bias_key, shapes["fc.bias"]))}
  return {"kernel": np.asarray(blocks.draw(kernel_init, key, shapes[f"{module}.kernel"]))}

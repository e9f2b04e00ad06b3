"""lucent's InceptionV1 (lucid's "inception5h") in Flax, NHWC, with lucent's numerics.

Conventions:
  * Images are NHWC, already normalised by the table's MEAN/STD (lucent's
    `x * 255 - 117`).
  * Taps, names, parameter table and input normalisation live in
    `jaxviz.nets.inceptionv1_table` (no JAX there); the parameter tree is
    `unflatten_dict(param_shapes(), sep=".")`: HWIO conv kernels, an (in, out)
    dense kernel.
  * Pads are lucent's fixed numbers whatever the input side (the 7x7/2 conv:
    zeros (2, 3); the 3x3/2 max pools: -inf (0, 1); the "same" convs and
    pools: symmetric), as lucent's `F.pad` calls give them.
  * `precision` is `jax.lax.Precision` for every conv and the matmul (see
    `jaxviz.vgg`).
  * `redirected_relu` (lucent's default model): every ReLU passes 0.1 of the
    gradient where its input is negative (lucent's `RedirectedReLU`), so that a
    render starting from noise gets a gradient through dead units. The forward
    pass is a plain ReLU either way.
  * Evaluation only: lucent's network has no dropout or batch norm to switch.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.errors import JaxvizError
from jaxviz.nets import blocks
from jaxviz.nets import inceptionv1_table as table

Array = jax.Array
Taps = Iterator[tuple[str, Array]]

# torch's default Conv2d/Linear weight init, kaiming_uniform(a=sqrt(5)): uniform with
# bound gain * sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)), i.e. 1 / sqrt(fan_in).
# Flax's bias initializers do not see fan_in, so the module's own biases start at 0;
# `random_module` draws both as torch does.
KERNEL_INIT = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

# The logits need mixed5b at 7x7 (table.LOGITS_SIDE); 224 px is the smallest input.
INIT_SIDE = 224


@jax.custom_vjp
def redirected_relu(x: Array) -> Array:
  """ReLU whose gradient is 0.1 (not 0) where x < 0; at x == 0 it passes unchanged,
  as lucent's `grad_input[input_tensor < 0] *= 0.1` does."""
  return jnp.maximum(x, 0)


def _redirected_relu_fwd(x: Array) -> tuple[Array, Array]:
  return jnp.maximum(x, 0), x


def _redirected_relu_bwd(x: Array, g: Array) -> tuple[Array]:
  return (jnp.where(x < 0, 0.1 * g, g),)


redirected_relu.defvjp(_redirected_relu_fwd, _redirected_relu_bwd)


def max_pool_3x3(x: Array, stride: int) -> Array:
  """(N, H, W, C) -> 3x3 max pool as lucent pads it: stride 2 after (0, 1) of -inf
  (side // 2), stride 1 after (1, 1) of -inf (same side).

  reduce_window rather than a max of shifted slices: its gradient goes to the first
  maximum of a window, as torch's does, and windows of tied ReLU zeros are common
  here; with the redirected ReLU their gradient is not zeroed below, so where it
  lands shows (a maximum of slices would split it between the ties).
  """
  pad = ((0, 1),) * 2 if stride == 2 else ((1, 1),) * 2
  return nn.max_pool(x, (3, 3), strides=(stride, stride), padding=pad)


def local_response_norm(x: Array) -> Array:
  """(N, H, W, C) -> same: torch's F.local_response_norm(size=9, alpha, beta=0.5, k=1).

  x / (k + alpha * mean of x^2 over channels [c - 4, c + 4], zero padded)^beta; the
  mean always divides by the window size, as torch's zero padding and average give.
  A windowed sum, not a banded matmul: on GPU a matmul at "default" precision would
  run in TF32 and lose the LRN's float32 accuracy.
  """
  size = table.LRN_SIZE
  squares = jax.lax.reduce_window(
      x * x, np.zeros((), x.dtype), jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1),
      ((0, 0), (0, 0), (0, 0), (size // 2, (size - 1) // 2)))
  return x / (table.LRN_K + table.LRN_ALPHA * (squares / size)) ** table.LRN_BETA


class _Make(NamedTuple):
  """The layers the forward pass creates: conv(name, features, size, stride, pad)
  and dense(name, features) return Flax modules; relu is the chosen ReLU."""

  conv: Callable[..., nn.Module]
  dense: Callable[[str, int], nn.Module]
  relu: Callable[[Array], Array]


def _mixed(x: Array, block: table.Mixed, make: _Make) -> Iterator[tuple[str, Array]]:
  """One inception block's taps, in lucent's forward order; returns the concat."""
  n, conv, relu = block.name, make.conv, make.relu
  c1 = conv(f"{n}_1x1_pre_relu_conv", block.c1x1, 1)(x)
  yield f"{n}_1x1_pre_relu_conv", c1
  b3 = conv(f"{n}_3x3_bottleneck_pre_relu_conv", block.c3x3_bottleneck, 1)(x)
  yield f"{n}_3x3_bottleneck_pre_relu_conv", b3
  b5 = conv(f"{n}_5x5_bottleneck_pre_relu_conv", block.c5x5_bottleneck, 1)(x)
  yield f"{n}_5x5_bottleneck_pre_relu_conv", b5
  pool = max_pool_3x3(x, 1)
  yield f"{n}_pool", pool
  c1 = relu(c1)
  yield f"{n}_1x1", c1
  b3 = relu(b3)
  yield f"{n}_3x3_bottleneck", b3
  b5 = relu(b5)
  yield f"{n}_5x5_bottleneck", b5
  reduce = conv(f"{n}_pool_reduce_pre_relu_conv", block.pool_reduce, 1)(pool)
  yield f"{n}_pool_reduce_pre_relu_conv", reduce
  c3 = conv(f"{n}_3x3_pre_relu_conv", block.c3x3, 3, pad=(1, 1))(b3)
  yield f"{n}_3x3_pre_relu_conv", c3
  c5 = conv(f"{n}_5x5_pre_relu_conv", block.c5x5, 5, pad=(2, 2))(b5)
  yield f"{n}_5x5_pre_relu_conv", c5
  reduce = relu(reduce)
  yield f"{n}_pool_reduce", reduce
  c3 = relu(c3)
  yield f"{n}_3x3", c3
  c5 = relu(c5)
  yield f"{n}_5x5", c5
  out = jnp.concatenate([c1, c3, c5, reduce], axis=-1)
  yield n, out
  return out


def _taps(x: Array, make: _Make) -> Taps:
  """(tap name, activation) in lucent's forward order; the logits only where defined."""
  conv, relu = make.conv, make.relu
  x = conv("conv2d0_pre_relu_conv", 64, 7, stride=2, pad=(2, 3))(x)
  yield "conv2d0_pre_relu_conv", x
  x = relu(x)
  yield "conv2d0", x
  x = max_pool_3x3(x, 2)
  yield "maxpool0", x
  x = conv("conv2d1_pre_relu_conv", 64, 1)(local_response_norm(x))
  yield "conv2d1_pre_relu_conv", x
  x = relu(x)
  yield "conv2d1", x
  x = conv("conv2d2_pre_relu_conv", 192, 3, pad=(1, 1))(x)
  yield "conv2d2_pre_relu_conv", x
  x = relu(x)
  yield "conv2d2", x
  x = max_pool_3x3(local_response_norm(x), 2)
  yield "maxpool1", x
  for block in table.MIXED:
    x = yield from _mixed(x, block, make)
    if block.name in table.POOL_AFTER:
      x = max_pool_3x3(x, 2)
      yield table.POOL_AFTER[block.name], x
  if x.shape[1:3] != (table.LOGITS_SIDE, table.LOGITS_SIDE):
    return  # lucent's 7x7 average and reshape to (-1, 1024) would mix positions into the batch
  x = make.dense(table.LOGITS, table.NUM_CLASSES)(x.mean(axis=(1, 2)))
  yield table.LOGITS, x[:, None, None, :]


_TAP_NAMES = frozenset(layer.name for layer in table.taps())


class Network(nn.Module):
  """lucent's InceptionV1, returning every tap computed by name.

  Attributes:
    precision: "default" | "high" | "highest" (see `jaxviz.vgg`).
    stop_at: the last tap to compute (a name of `table.taps()`); None runs the
      whole network.
    redirected_relu: lucent's RedirectedReLU gradient (its default model) rather
      than a plain ReLU's; the forward pass is the same.
  """

  precision: str = "default"
  stop_at: str | None = None
  redirected_relu: bool = True

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    """(N, H, W, 3) normalised -> {tap: (N, h, w, C)}, the logits as (N, 1, 1, 1008).

    The logits are computed only where mixed5b is 7x7 (inputs of 224..255 px):
    with `stop_at=None` they are left out at other sides; asked for by
    `stop_at`, they are refused with a JaxvizError. Initialise at 224 px, or the
    dense layer's parameters are never created.
    """
    precision = jax.lax.Precision(self.precision)

    def conv(name: str, features: int, size: int, stride: int = 1,
             pad: tuple[int, int] = (0, 0)) -> nn.Module:
      return nn.Conv(features, (size, size), (stride, stride), padding=(pad, pad),
                     precision=precision, kernel_init=KERNEL_INIT, name=name)

    def dense(name: str, features: int) -> nn.Module:
      return nn.Dense(features, precision=precision, kernel_init=KERNEL_INIT, name=name)

    make = _Make(conv, dense, redirected_relu if self.redirected_relu else nn.relu)
    out = blocks.taps_until(table.ARCH, _TAP_NAMES, _taps(x, make), self.stop_at)
    if self.stop_at is not None and self.stop_at not in out:  # only the logits can be missing
      raise JaxvizError(
          f"inceptionv1's logits need mixed5b at 7x7, i.e. an input of 224-255 px; "
          f"this {x.shape[1]}x{x.shape[2]} input gives mixed5b "
          f"{out['mixed5b'].shape[1]}x{out['mixed5b'].shape[2]}")
    return out


def flax_param_shapes() -> dict[str, tuple[int, ...]]:
  """The parameter table read off the Flax module (for the test)."""
  return blocks.flax_param_shapes(Network(), INIT_SIDE)


def random_module(key: Array, module: str) -> dict[str, np.ndarray]:
  """One module's parameters as torch initialises lucent's layers (kernel and bias both
  uniform in +-1/sqrt(fan_in)), from `fold_in(key, the module's position)`: any set of
  modules is the same as those modules of the whole network."""
  shapes = table.param_shapes()
  kernel, bias = _random_kernel_and_bias(blocks.module_key(key, table.module_names(), module),
                                         shapes[f"{module}.kernel"], shapes[f"{module}.bias"])
  return {"kernel": np.asarray(kernel), "bias": np.asarray(bias)}


@functools.partial(jax.jit, static_argnames=("kernel_shape", "bias_shape"))
def _random_kernel_and_bias(key: Array, kernel_shape: tuple[int, ...],
                            bias_shape: tuple[int, ...]) -> tuple[Array, Array]:
  """Jitted so that each shape's program is compiled once and kept in the cache."""
  bound = 1 / math.sqrt(math.prod(kernel_shape[:-1]))  # fan_in: HWI of HWIO, or `in`
  kernel_key, bias_key = jax.random.split(key)
  return (jax.random.uniform(kernel_key, kernel_shape, jnp.float32, -bound, bound),
          jax.random.uniform(bias_key, bias_shape, jnp.float32, -bound, bound))

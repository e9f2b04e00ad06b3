"""torchvision's ResNet-50 (V1.5) in Flax, NHWC, in evaluation mode.

Conventions:
  * Images are NHWC, ImageNet-normalised ((rgb - MEAN) / STD of
    `jaxviz.nets.resnet50_table`).
  * Taps, names, parameter table and normalisation live in
    `jaxviz.nets.resnet50_table` (no JAX there); the parameter tree is
    `unflatten_dict(param_shapes(), sep=".")`: nested as torchvision's modules
    ("layer3_2" / "bn1" / "scale"), HWIO conv kernels, an (in, out) dense kernel.
  * Evaluation only: batch norm uses its running statistics, kept as parameters
    ("mean", "var") next to "scale" and "bias" (`blocks.BatchNorm`, with
    torch's default eps).
  * Every tap is its own value: nothing is updated in place, so `bn3` is the
    batch norm's output before the identity is added whatever runs after it
    (torch's in-place add and ReLU are what the table's notes are about).
  * `precision` is `jax.lax.Precision` for every conv and the matmul (see
    `jaxviz.vgg`).
"""

from __future__ import annotations

import math
from typing import Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.nets import resnet50_table as table
from jaxviz.nets import blocks
from jaxviz.nets.blocks import BatchNorm

Array = jax.Array
Taps = Iterator[tuple[str, Array]]

INIT_SIDE = 32  # parameters do not depend on the input side (the average pool is adaptive)


def kaiming_fan_out(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
  """torchvision ResNet's conv init: kaiming_normal_(mode="fan_out", nonlinearity="relu"),
  normal(0, sqrt(2 / (out_channels * kh * kw))); `shape` is HWIO."""
  kh, kw, _, outputs = shape
  return math.sqrt(2.0 / (outputs * kh * kw)) * jax.random.normal(key, shape, dtype)


def torch_linear_uniform(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
  """torch's default Linear init for both weight and bias: uniform +-1/sqrt(fan_in)
  (kaiming_uniform with a = sqrt(5) works out to that bound for the weight)."""
  bound = 1 / math.sqrt(table.FC_INPUTS)
  return jax.random.uniform(key, shape, dtype, -bound, bound)


def conv(features: int, kernel: int, stride: int, padding: int, precision: str,
         name: str | None = None) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), (stride, stride),
                 padding=((padding, padding),) * 2, use_bias=False,
                 precision=jax.lax.Precision(precision), kernel_init=kaiming_fan_out, name=name)


class Bottleneck(nn.Module):
  """torchvision's Bottleneck's modules, named as its attributes ("conv1", "bn1", ...,
  "downsample_0", "downsample_1"); `_bottleneck` runs them tap by tap."""

  block: table.Bottleneck
  precision: str = "default"

  def setup(self):
    for name, _, outputs, kernel, stride, padding in self.block.convs():
      name = table.flax_name(name)
      setattr(self, name, conv(outputs, kernel, stride, padding, self.precision))
      norm = name.replace("conv", "bn").replace("downsample_0", "downsample_1")
      setattr(self, norm, BatchNorm(table.BN_EPS))


def _bottleneck(x: Array, block: table.Bottleneck, module: Bottleneck) -> Taps:
  """One block's taps in the table's order; returns the block's output."""
  p = block.path
  out = x
  for i in (1, 2):
    out = getattr(module, f"conv{i}")(out)
    yield f"{p}.conv{i}", out
    out = getattr(module, f"bn{i}")(out)
    yield f"{p}.bn{i}", out
    out = nn.relu(out)
    yield f"{p}.relu{i}", out
  out = module.conv3(out)
  yield f"{p}.conv3", out
  out = module.bn3(out)
  yield f"{p}.bn3", out
  identity = x
  if block.has_downsample:
    identity = module.downsample_0(x)
    yield f"{p}.downsample.0", identity
    identity = module.downsample_1(identity)
    yield f"{p}.downsample.1", identity
    yield f"{p}.downsample", identity
  out = out + identity
  yield f"{p}.add", out
  out = nn.relu(out)
  yield p, out
  return out


_TAP_NAMES = frozenset(layer.name for layer in table.taps())
_LAST_BLOCKS = {f"{stage}.{count - 1}": stage for stage, count, _, _ in table.STAGES}


class Network(nn.Module):
  """torchvision's ResNet-50 (evaluation), returning every tap computed.

  Attributes:
    precision: "default" | "high" | "highest" (see `jaxviz.vgg`).
    stop_at: the last tap to compute (a name of `table.taps()`); None runs the
      whole network.
  """

  precision: str = "default"
  stop_at: str | None = None

  @nn.compact
  def __call__(self, x: Array) -> dict[str, Array]:
    """(N, H, W, 3) normalised -> {tap: (N, h, w, C)}, the logits as (N, 1, 1, 1000)."""
    return blocks.taps_until(table.ARCH, _TAP_NAMES, self._taps(x), self.stop_at)

  def _taps(self, x: Array) -> Taps:
    x = conv(64, 7, 2, 3, self.precision, "conv1")(x)
    yield "conv1", x
    x = BatchNorm(table.BN_EPS, name="bn1")(x)
    yield "bn1", x
    x = nn.relu(x)
    yield "relu", x
    # MaxPool2d(3, 2, 1): the padding is -inf (reduce_window's initial value).
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    yield "maxpool", x
    for block in table.blocks():
      module = Bottleneck(block, self.precision, name=block.module)
      x = yield from _bottleneck(x, block, module)
      if block.path in _LAST_BLOCKS:
        yield _LAST_BLOCKS[block.path], x
    x = x.mean(axis=(1, 2), keepdims=True)  # AdaptiveAvgPool2d((1, 1))
    yield "avgpool", x
    dense = nn.Dense(table.NUM_CLASSES, precision=jax.lax.Precision(self.precision),
                     kernel_init=torch_linear_uniform, bias_init=torch_linear_uniform,
                     name="fc")
    yield "fc", dense(x.reshape(x.shape[0], -1))[:, None, None, :]


def flax_param_shapes() -> dict[str, tuple[int, ...]]:
  """The parameter table read off the Flax module (for the test)."""
  return blocks.flax_param_shapes(Network(), INIT_SIDE)


def random_module(key: Array, module: str) -> dict[str, np.ndarray]:
  """One module's parameters as torchvision's `resnet50()` draws them, from
  `fold_in(key, the module's position)`: any set of modules is the same as those
  modules of the whole network.

  Conv kernels kaiming normal, fan-out (`kaiming_fan_out`); batch norm weight 1,
  bias 0, fresh running statistics (mean 0, var 1); fc weight and bias torch's
  Linear default, uniform +-1/sqrt(2048).
  """
  shapes = table.param_shapes()
  key = blocks.module_key(key, table.module_names(), module)
  if f"{module}.scale" in shapes:
    features = shapes[f"{module}.scale"]
    return {"scale": np.ones(features, np.float32), "bias": np.zeros(features, np.float32),
            "mean": np.zeros(features, np.float32), "var": np.ones(features, np.float32)}
  if module == "fc":
    kernel_key, bias_key = jax.random.split(key)
    return {"kernel": np.asarray(blocks.draw(torch_linear_uniform, kernel_key,
                                             shapes["fc.kernel"])),
            "bias": np.asarray(blocks.draw(torch_linear_uniform, bias_key, shapes["fc.bias"]))}
  return {"kernel": np.asarray(blocks.draw(kaiming_fan_out, key, shapes[f"{module}.kernel"]))}

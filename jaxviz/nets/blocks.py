"""What the canonical networks' Flax modules share: torch's evaluation-mode batch norm,
the parameter table read off a module, and per-module random draws.

Conventions:
  * Batch norm keeps its running statistics as parameters ("mean", "var" next to
    "scale" and "bias"): jaxviz only evaluates, and a converted file holds them
    like any other tensor.
  * A module's random parameters come from `fold_in(key, its position in the
    table)`, so any subset of modules equals those modules of a whole draw.
"""

from __future__ import annotations

import functools
from typing import Callable, Iterator

from jaxviz.errors import JaxvizError

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

Array = jax.Array
Init = Callable[[Array, tuple[int, ...], jnp.dtype], Array]


class BatchNorm(nn.Module):
  """torch's BatchNorm2d in evaluation mode, its running statistics as parameters."""

  eps: float

  @nn.compact
  def __call__(self, x: Array) -> Array:
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    mean = self.param("mean", nn.initializers.zeros, (features,))
    var = self.param("var", nn.initializers.ones, (features,))
    # torch's CPU kernel's form: x * alpha + (bias - mean * alpha).
    alpha = scale * jax.lax.rsqrt(var + self.eps)
    return x * alpha + (bias - mean * alpha)


def flax_param_shapes(network: nn.Module, side: int) -> dict[str, tuple[int, ...]]:
  """The flat parameter table read off `network` by `jax.eval_shape` on a (1, side, side,
  3) input (what the tests hold each explicit table to)."""
  images = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  variables = jax.eval_shape(network.init, jax.random.key(0), images)
  return {key: tuple(leaf.shape)
          for key, leaf in traverse_util.flatten_dict(variables["params"], sep=".").items()}


def module_key(key: Array, modules: tuple[str, ...], module: str) -> Array:
  """`fold_in(key, module's position)`; ValueError for a module not in `modules`."""
  return jax.random.fold_in(key, modules.index(module))


@functools.partial(jax.jit, static_argnames=("init", "shape"))
def draw(init: Init, key: Array, shape: tuple[int, ...]) -> Array:
  """`init(key, shape, float32)`, jitted so that each (init, shape) program is compiled
  once and kept in the cache (a network has a few dozen distinct shapes)."""
  return init(key, shape, jnp.float32)


def taps_until(arch: str, tap_names: frozenset[str], taps: Iterator[tuple[str, Array]],
               stop_at: str | None) -> dict[str, Array]:
  """A network's (tap, activation) pairs up to and including `stop_at` (all if None).

  `taps` is the network's generator, which creates its modules as it runs: stopping
  it at `stop_at` leaves later modules uncomputed and their parameters unneeded.

  Raises:
    JaxvizError: for a `stop_at` that is not a tap of `arch`.
  """
  if stop_at is not None and stop_at not in tap_names:
    raise JaxvizError(f"unknown {arch} tap {stop_at!r}")
  out: dict[str, Array] = {}
  for name, value in taps:
    out[name] = value
    if name == stop_at:
      break
  return out

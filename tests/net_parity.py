"""Helpers the canonical networks' parity tests share (tests/test_net_<arch>.py).

Parameters reach the Flax network two ways: through the converter's strict check
and weight table on the float32 tensors a `.pth` holds (the path real weights
take), or through the same table on the float64 tensors (the converter's float32
cast would cap float64 parity at float32's rounding).
"""

from __future__ import annotations

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import traverse_util

import jaxviz_convert.torch_weights as torch_weights

from conftest import relative_error


def rgb(side: int, count: int = 2, seed: int = 0) -> np.ndarray:
  """(count, 3, side, side) float64 in [0, 1]."""
  return np.random.default_rng(seed + side).uniform(size=(count, 3, side, side))


def converted_params(model: torch.nn.Module, arch: str):
  """The model's state dict as float32 through `torch_weights.state_dict_to_flat`, nested."""
  state_dict = {key: value.float().numpy() for key, value in model.state_dict().items()}
  return traverse_util.unflatten_dict(torch_weights.state_dict_to_flat(state_dict, arch),
                                      sep=".")


def float64_params(model: torch.nn.Module, weight_table):
  """The weight table's transforms on the model's float64 tensors, nested."""
  state_dict = model.state_dict()
  return traverse_util.unflatten_dict(
      {flax_key: transform(state_dict[torch_key].numpy())
       for torch_key, flax_key, transform in weight_table}, sep=".")


def assert_taps_match(ours, expected, tolerance: float, order=None) -> float:
  """Every tap of `expected` in `ours`, same shape, max |ours - expected| / max |expected|
  <= tolerance; returns the worst. `order`: the names `expected` must have, in order."""
  if order is not None:
    assert list(expected) == list(order)  # the reference made them in the table's order
  assert set(ours) == set(expected)
  for name in expected:
    assert ours[name].shape == expected[name].shape, name
  errors = {name: relative_error(np.asarray(ours[name]), expected[name]) for name in expected}
  worst = max(errors, key=errors.get)
  assert errors[worst] <= tolerance, f"{worst}: {errors[worst]:.2e}"
  return errors[worst]


def shapes_in_order(network_cls, init_side: int, side: int):
  """(the taps' shapes for a (1, side, side, 3) input, their names in the order the
  module returned them), by `jax.eval_shape` (jax's outputs come sorted by key)."""
  params = jax.eval_shape(network_cls().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, init_side, init_side, 3), jnp.float32))
  order = []

  def run(p, x):
    out = network_cls().apply(p, x)
    order.extend(out)
    return out

  shapes = jax.eval_shape(run, params, jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32))
  return shapes, order


def only_modules(params, modules):
  """The parameters of `modules` (flat module names such as "layer1_0.bn1") alone."""
  wanted = set(modules)
  return traverse_util.unflatten_dict(
      {key: value for key, value in traverse_util.flatten_dict(params, sep=".").items()
       if key.rpartition(".")[0] in wanted}, sep=".")


def assert_needed_modules_suffice(activations, table, params, x, tap: str, full) -> None:
  """`table.needed_modules(tap)` (in network order) computes `tap` exactly as the whole
  network does (`full`), and without its last module the network does not run."""
  needed = table.needed_modules(tap)
  assert list(needed) == [m for m in table.module_names() if m in needed]
  names = [layer.name for layer in table.taps()]
  out = activations(only_modules(params, needed), x, stop_at=tap)
  assert set(out) == set(names[: names.index(tap) + 1])
  np.testing.assert_array_equal(np.asarray(out[tap]), np.asarray(full))
  if len(needed) > 1:
    with pytest.raises(flax.errors.ScopeParamNotFoundError):
      jax.eval_shape(lambda p: activations(p, x, stop_at=tap),
                     only_modules(params, needed[:-1]))

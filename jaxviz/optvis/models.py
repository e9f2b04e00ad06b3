"""Models: a network as the named activations of one group of images.

Conventions:
  * `features(params, inputs, names)` takes model inputs (N, H, W, C) (images
    after `preprocess`) and returns at least the activations in `names`, each
    (N, h, w, channels), NHWC like every image here. N is the group of images
    optimised together for one map (1 unless an objective couples several).
  * `preprocess(images)` maps RGB in [0, 1] to model inputs: (x - mean) / std
    per channel, with the model's `mean` and `std`.
  * `channel(params, inputs, name, unit)` is an optional fast path: channel
    `unit` of `name` alone, (N, h, w). Models without one set it to None.
  * `prune(params, names)` keeps the parameters the activations in `names` need.
  * Models are frozen dataclasses: hashable static arguments of jitted functions.

Any Flax module works without writing a class (`FlaxModel`): one that returns
a dict of named activations, or any other, whose submodules' outputs are read
through `capture_intermediates` under their names ("conv1", "block2/conv").
A plain function `(params, inputs) -> {name: activation}` works too
(`FunctionModel`). `as_model` picks the wrapper.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol

import flax.linen as nn
import jax
from flax import traverse_util

from jaxviz import ops
from jaxviz.errors import JaxvizError

Params = Any
Activations = dict[str, jax.Array]


class Model(Protocol):
  """What the optimisation core needs of a network (see the module docstring)."""

  mean: tuple[float, ...]
  std: tuple[float, ...]
  channel: Callable[..., jax.Array] | None

  def features(self, params: Params, inputs: jax.Array, names: frozenset[str]) -> Activations:
    ...

  def prune(self, params: Params, names: frozenset[str]) -> Params:
    ...


def preprocess(model: Model, images: jax.Array) -> jax.Array:
  """RGB images in [0, 1], (..., 3) -> the model's inputs: (x - mean) / std."""
  return ops.normalise(images, model.mean, model.std)


def deprocess(model: Model, inputs: jax.Array) -> jax.Array:
  """Inverse of `preprocess`; does not clip."""
  return ops.denormalise(inputs, model.mean, model.std)


def _check_names(found: Activations, names: frozenset[str]) -> Activations:
  missing = sorted(set(names) - set(found))
  if missing:
    raise JaxvizError(f"the model has no activation named {missing[0]!r}; it has: "
                      f"{', '.join(sorted(found))}")
  return found


@dataclasses.dataclass(frozen=True)
class FlaxModel:
  """Any Flax module as a Model.

  A module that returns a dict is read from that dict; any other module is
  read through `capture_intermediates`: every submodule's output under its
  path ("conv1", "block2/conv"), and the module's own output as "output".

  Attributes:
    module: the Flax module; called as `module.apply({"params": params}, inputs)`.
    mean, std: the input normalisation it expects (identity by default).
  """

  module: nn.Module
  mean: tuple[float, ...] = (0.0, 0.0, 0.0)
  std: tuple[float, ...] = (1.0, 1.0, 1.0)
  channel = None

  def features(self, params: Params, inputs: jax.Array, names: frozenset[str]) -> Activations:
    output, state = self.module.apply({"params": params}, inputs, capture_intermediates=True,
                                      mutable=["intermediates"])
    found: Activations = {}
    for path, values in traverse_util.flatten_dict(state["intermediates"], sep="/").items():
      name = path.removesuffix("/__call__").removesuffix("__call__") or "output"
      found[name] = values[0]
    if isinstance(output, dict):
      found.update(output)
    return _check_names(found, names)

  def prune(self, params: Params, names: frozenset[str]) -> Params:
    return params


@dataclasses.dataclass(frozen=True)
class FunctionModel:
  """A function `(params, inputs) -> {name: activation}` as a Model."""

  function: Callable[[Params, jax.Array], Activations]
  mean: tuple[float, ...] = (0.0, 0.0, 0.0)
  std: tuple[float, ...] = (1.0, 1.0, 1.0)
  channel = None

  def features(self, params: Params, inputs: jax.Array, names: frozenset[str]) -> Activations:
    return _check_names(dict(self.function(params, inputs)), names)

  def prune(self, params: Params, names: frozenset[str]) -> Params:
    return params


def as_model(model, mean: tuple[float, ...] | None = None,
             std: tuple[float, ...] | None = None) -> Model:
  """A Model from a Model, a Flax module or a function (see the module docstring)."""
  normalisation = {key: tuple(value) for key, value in (("mean", mean), ("std", std))
                   if value is not None}
  if isinstance(model, nn.Module):
    return FlaxModel(model, **normalisation)
  if hasattr(model, "features") and hasattr(model, "prune"):
    return dataclasses.replace(model, **normalisation) if normalisation else model
  if callable(model):
    return FunctionModel(model, **normalisation)
  raise JaxvizError(f"cannot use {type(model).__name__} as a model: pass a Flax module, a "
                    "function (params, images) -> {name: activation}, or a jaxviz Model")


class Features:
  """The activations one objective reads, computed once per step.

  If the objective reads only channel `unit` of one layer and the model has a
  single-channel fast path, only that channel is computed (`model.channel`);
  otherwise every layer the objective names is computed by one
  `model.features` call.
  """

  def __init__(self, model: Model, params: Params, inputs: jax.Array, objective,
               unit: jax.Array):
    self._unit = unit
    self._channel_layer = objective.channel_only() if model.channel is not None else None
    if self._channel_layer is not None:
      self._channel = model.channel(params, inputs, self._channel_layer, unit)
      self._layers: Activations = {}
    else:
      self._layers = model.features(params, inputs, objective.layers())

  def layer(self, name: str) -> jax.Array:
    """(N, h, w, channels) activations of `name`."""
    return self._layers[name]

  def channel(self, name: str) -> jax.Array:
    """(N, h, w): channel `unit` (the map being rendered) of `name`."""
    if name == self._channel_layer:
      return self._channel
    return jax.lax.dynamic_index_in_dim(self._layers[name], self._unit, axis=-1,
                                        keepdims=False)

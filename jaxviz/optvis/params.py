"""Parameterisations: how the optimised variable becomes a group of images.

Conventions:
  * The variable of one map is a pytree for a group of N images (N = the
    recipe's `group`, 1 unless an objective couples several images).
  * `init(key, side, group, dtype, model)` draws it; `from_photo(photo,
    side, group, model)` starts it from an (H, W, 3) photo in [0, 1] (its
    dtype is the render's).
  * `to_image(var, model)` -> (N, side, side, 3) RGB, nominally in [0, 1]
    (the write-up's pixels may leave it; outputs are clipped).
  * `to_input(var, model)` -> the model's input. By default the image
    through `models.preprocess`; a parameterisation whose variable already is
    the model's input returns it as is, so that nothing rounds it.
  * `next_scale(var, side, model)` moves the variable to the next scale's side.
  * Randomness is key-first; sizes are static Python ints.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from jaxviz import ops
from jaxviz.optvis import models


class Parameterisation:
  """Base class: subclasses are frozen dataclasses (see the module docstring)."""

  def init(self, key: jax.Array, side: int, group: int, dtype, model):
    raise NotImplementedError

  def from_photo(self, photo: jax.Array, side: int, group: int, model):
    raise NotImplementedError

  def to_image(self, var, model) -> jax.Array:
    raise NotImplementedError

  def to_input(self, var, model) -> jax.Array:
    return models.preprocess(model, self.to_image(var, model))

  def next_scale(self, var, side: int, model):
    raise NotImplementedError(f"{type(self).__name__} has a single scale")

  def spec(self) -> dict:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class NormalisedPixels(Parameterisation):
  """The write-up's: the variable is the normalised image, the model's input itself.

  Start: near-grey noise `(u * 20 + 128) / 255`, u ~ U[0, 1). Between scales
  the image (de-normalised, not clipped) is resized with OpenCV's bicubic and
  box-blurred (`blur` x `blur`, 1 = none), then normalised again.
  """

  blur: int = 5

  @staticmethod
  def noise(key, side: int, group: int, dtype) -> jax.Array:
    """The start images, (group, side, side, 3) RGB: near-grey noise."""
    return (jax.random.uniform(key, (group, side, side, 3), dtype) * 20 + 128) / 255

  def init(self, key, side, group, dtype, model):
    return models.preprocess(model, self.noise(key, side, group, dtype))

  def from_photo(self, photo, side, group, model):
    resized = ops.resize_bicubic(photo, side, side)
    return models.preprocess(model, jnp.broadcast_to(resized, (group, side, side, 3)))

  def to_image(self, var, model):
    return models.deprocess(model, var)

  def to_input(self, var, model):
    return var

  def next_scale(self, var, side, model):
    image = jax.vmap(lambda one: ops.box_blur(ops.resize_bicubic(one, side, side), self.blur))(
        self.to_image(var, model))
    return models.preprocess(model, image)

  def spec(self) -> dict:
    return {"normalised_pixels": {"blur": self.blur}}

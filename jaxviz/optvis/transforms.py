"""Transforms: key-first random image transforms applied before the model each step.

Conventions:
  * A transform acts on the group of one map, (N, H, W, 3), in the
    parameterisation's space, and returns images (the size may change). One
    draw serves the whole group, as in lucid and lucent.
  * A random transform is two pure parts: `draw(key)` -> its random choices
    (a pytree of scalars and arrays) and `apply(choices, images)`, so a test
    can hand it the same choices another implementation drew.
  * A transform whose output size depends on its draw (`RandomScale`) lists
    its `variants`; `Compose` runs the rest of the chain, and the caller's
    `finish` (normalisation, the final resize), inside one `lax.switch`
    branch per variant, so every branch ends in the same static shape.
  * The key of step s of map k is `fold_in(steps_key_k, s)` (`render`); a
    composition splits it, one key per transform.
  * `spec()` is JSON-able, for records and identity hashes.

lucent 0.1.8 computes its warps with kornia 0.4.1, whose pixel-to-[-1, 1]
matrix assumes aligned corners while `grid_sample` does not: a jitter of d px
moves the image by d * W / (W - 1) px, bilinearly, and that matrix's entries
are float32. `affine_as_kornia_041` reproduces exactly that, so the lucid
recipe equals lucent's (tested); it is a quirk of the reference, kept on purpose.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ops


class Transform:
  """Base class: subclasses are frozen dataclasses defining `draw`, `apply` and `spec`."""

  variants: tuple = ()

  def draw(self, key: jax.Array):
    return None

  def apply(self, choices, images: jax.Array) -> jax.Array:
    raise NotImplementedError

  def apply_variant(self, variant: int, images: jax.Array) -> jax.Array:
    raise NotImplementedError

  def spec(self) -> dict:
    raise NotImplementedError


def _identity(images):
  return images


@dataclasses.dataclass(frozen=True)
class Compose(Transform):
  """The transforms in order; empty is the identity (the write-up uses none)."""

  transforms: tuple[Transform, ...] = ()

  def draw(self, key):
    if not self.transforms:
      return ()
    keys = jax.random.split(key, len(self.transforms))
    return tuple(t.draw(k) for t, k in zip(self.transforms, keys))

  def apply(self, choices, images, finish: Callable = _identity):
    """The chain on `images`, then `finish` (inside each branch of a size-changing one)."""
    for position, (transform, choice) in enumerate(zip(self.transforms, choices)):
      if transform.variants:
        rest = Compose(self.transforms[position + 1:])
        rest_choices = choices[position + 1:]
        branches = [
            (lambda images, v=v: rest.apply(rest_choices, transform.apply_variant(v, images),
                                             finish))
            for v in range(len(transform.variants))]
        return jax.lax.switch(choice, branches, images)
      images = transform.apply(choice, images)
    return finish(images)

  def __bool__(self) -> bool:
    return bool(self.transforms)

  def spec(self) -> dict:
    return {"compose": [t.spec() for t in self.transforms]}


@dataclasses.dataclass(frozen=True)
class Pad(Transform):
  """`width` pixels of `value` on every side (lucent's pad(mode="constant"))."""

  width: int
  value: float = 0.5

  def apply(self, choices, images):
    w = self.width
    return jnp.pad(images, ((0, 0), (w, w), (w, w), (0, 0)), constant_values=self.value)

  def spec(self) -> dict:
    return {"pad": dataclasses.asdict(self)}


def affine_as_kornia_041(matrix: jax.Array, height: int, width: int) -> jax.Array:
  """The (3, 3) output-pixel -> source-pixel map of `kornia.warp_affine(M)` 0.4.1.

  `matrix` (3, 3) maps source to destination pixels. kornia normalises it with
  N (aligned corners; entries 2 / (side - 1) in float32) and samples with
  `grid_sample(align_corners=False)` (P): source = P^-1 N M^-1 N^-1 P.
  """
  dtype = matrix.dtype
  n = jnp.asarray([[np.float32(2.0 / (width - 1)), 0, -1],
                   [0, np.float32(2.0 / (height - 1)), -1], [0, 0, 1]], dtype)
  p = jnp.asarray([[2.0 / width, 0, 1.0 / width - 1],
                   [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]], dtype)
  return jnp.linalg.inv(p) @ n @ jnp.linalg.inv(matrix) @ jnp.linalg.inv(n) @ p


def _warp_group(images: jax.Array, source_of: jax.Array) -> jax.Array:
  return jax.vmap(lambda image: ops.warp_bilinear(image, source_of))(images)


@dataclasses.dataclass(frozen=True)
class Jitter(Transform):
  """lucent's jitter(d): a shift by (dx, dy), each uniform in 0..d-1, right and down
  (sub-pixel as kornia 0.4.1 makes it: see the module docstring), zeros behind."""

  distance: int

  def draw(self, key):
    return jax.random.randint(key, (2,), 0, self.distance)

  def apply(self, shift, images):
    height, width = images.shape[1:3]
    dx, dy = shift[0].astype(images.dtype), shift[1].astype(images.dtype)
    one, zero = jnp.ones((), images.dtype), jnp.zeros((), images.dtype)
    matrix = jnp.stack([jnp.stack([one, zero, dx]), jnp.stack([zero, one, dy]),
                        jnp.stack([zero, zero, one])])
    return _warp_group(images, affine_as_kornia_041(matrix, height, width))

  def spec(self) -> dict:
    return {"jitter": self.distance}


@dataclasses.dataclass(frozen=True)
class RandomScale(Transform):
  """lucent's random_scale: one of `scales`, a bilinear (aligned corners) resize to
  ceil(scale * side), then zeros padded back: pad_y on the top and left, pad_x on the
  bottom and right (lucent's order; equal for square images)."""

  scales: tuple[float, ...]

  @property
  def variants(self) -> tuple:
    return self.scales

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.scales))

  def apply_variant(self, variant, images):
    height, width = images.shape[1:3]
    scale = self.scales[variant]
    new_h, new_w = math.ceil(scale * height), math.ceil(scale * width)
    pad_x = max(0, math.ceil((width - new_w) / 2))
    pad_y = max(0, math.ceil((height - new_h) / 2))
    resized = jax.vmap(lambda one: ops.resize_bilinear_align_corners(one, new_h, new_w))(images)
    return jnp.pad(resized, ((0, 0), (pad_y, pad_x), (pad_y, pad_x), (0, 0)))

  def spec(self) -> dict:
    return {"random_scale": list(self.scales)}


@dataclasses.dataclass(frozen=True)
class RandomRotate(Transform):
  """lucent's random_rotate: one of `angles` (degrees; repeats weigh more), about the
  image centre, bilinear, zeros outside; the rotation matrix in float32, as kornia
  computes it."""

  angles: tuple[float, ...]

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.angles))

  def apply(self, index, images):
    height, width = images.shape[1:3]
    # kornia builds the matrix in float32 (its pi too); so does this, then widens it.
    degrees = jnp.asarray(self.angles, jnp.float32)[index]
    radians = degrees * jnp.float32(np.pi) / jnp.float32(180.0)
    alpha, beta = jnp.cos(radians), jnp.sin(radians)
    cx, cy = jnp.float32((width - 1) / 2.0), jnp.float32((height - 1) / 2.0)
    zero, one = jnp.float32(0), jnp.float32(1)
    matrix = jnp.stack([jnp.stack([alpha, beta, (1 - alpha) * cx - beta * cy]),
                        jnp.stack([-beta, alpha, beta * cx + (1 - alpha) * cy]),
                        jnp.stack([zero, zero, one])])
    return _warp_group(images, affine_as_kornia_041(matrix.astype(images.dtype), height, width))

  def spec(self) -> dict:
    return {"random_rotate": list(self.angles)}


def lucid_standard() -> Compose:
  """lucid's (and lucent's) standard transforms: pad 12 with 0.5, jitter 8, scale
  1 + (i - 5) / 50 for i in 0..10, rotate -10..10 degrees with five more zeros, jitter 4."""
  return Compose((Pad(12, 0.5), Jitter(8),
                  RandomScale(tuple(1 + (i - 5) / 50.0 for i in range(11))),
                  RandomRotate(tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])),
                  Jitter(4)))


@dataclasses.dataclass(frozen=True)
class CropsWithNoise(Transform):
  """MACO's step (horama's `optimization_step`): `crops` square crops of each image,
  each resized to `side` and noised.

  Crop k: centre (x0, y0) = 0.5 + 0.15 * normal, side delta * S (S the image
  side) with delta uniform in [box[1], 2 * box[1] - box[0]) (horama offsets by
  the upper bound: its quirk, kept), RoIAlign to 2 * side, an antialiased
  bicubic (Keys a = -0.5) to `side`, then + noise * normal and
  + noise * (uniform - 0.5).
  """

  crops: int = 6
  box: tuple[float, float] = (0.20, 0.25)
  noise: float = 0.05
  side: int = 224

  def draw(self, key):
    centre_x, centre_y, size, gauss, flat = jax.random.split(key, 5)
    shape = (self.crops, self.side, self.side, 3)
    return {"x0": 0.5 + jax.random.normal(centre_x, (self.crops,)) * 0.15,
            "y0": 0.5 + jax.random.normal(centre_y, (self.crops,)) * 0.15,
            "delta": jax.random.uniform(size, (self.crops,)) * (self.box[1] - self.box[0])
                     + self.box[1],
            "gauss": jax.random.normal(gauss, shape), "uniform": jax.random.uniform(flat, shape)}

  @property
  def largest_fraction(self) -> float:
    """The largest crop side as a fraction of the image side."""
    return 2 * self.box[1] - self.box[0]

  def apply(self, draw, images):
    image_side = images.shape[1]
    if self.largest_fraction * image_side > 2 * self.side:
      raise ValueError(f"crops of {image_side} px images exceed {2 * self.side} px, twice "
                       "the crop side; RoIAlign would take several samples per bin")
    dtype = images.dtype
    half = draw["delta"].astype(dtype) / 2
    x0, y0 = draw["x0"].astype(dtype), draw["y0"].astype(dtype)
    boxes = jnp.stack([x0 - half, y0 - half, x0 + half, y0 + half], axis=1) * image_side

    def crops_of(image):
      crop = jax.vmap(lambda box: ops.roi_align(image, box, 2 * self.side))(boxes)
      resized = jax.vmap(lambda one: ops.resize_antialiased_cubic(one, self.side, self.side))(crop)
      resized = resized + draw["gauss"].astype(dtype) * self.noise
      return resized + (draw["uniform"].astype(dtype) - 0.5) * self.noise

    return jax.vmap(crops_of)(images).reshape(-1, self.side, self.side, images.shape[-1])

  def spec(self) -> dict:
    return {"crops_with_noise": dataclasses.asdict(self)}

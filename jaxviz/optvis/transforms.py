"""Transforms: key-first random image transforms applied before the model each step.

Conventions:
  * A transform acts on the group of one map, in the parameterisation's space,
    held on a *canvas*: (N, C, C, 3) images whose valid part is the top-left
    S x S square, zeros elsewhere. S is one of a static tuple of possible sides,
    `sides`, and a traced index, `which`, says which one. A transform whose
    output side depends on its draw (`RandomScale`) adds sides; the others keep
    them. So one program serves every draw: no branch per size, nothing that
    `vmap` would turn into "compute every branch, then select".
  * What a draw selects (an interpolation matrix, a warp) is computed on the
    host, in float64, from the numbers the reference computes (kornia's float32
    rotation matrices included), and indexed by the draw as a constant table.
    Under `jit` XLA may re-associate arithmetic on traced values (it evaluated
    `degrees * pi / 180` as `degrees * (pi / 180)`, one float32 ulp off kornia
    for 19 of lucid's 21 angles, which Adam grew to 10/255 in 12 steps); it
    cannot change a constant.
  * A random transform is two pure parts: `draw(key)` -> its random choices
    (int32 and float32 arrays, whatever the render's dtype, so that float32
    and float64 renders of a seed see the same draws) and `apply(choices,
    images, which, sides)` -> (images, which), so a test can hand it the same
    choices another implementation drew (`eager` runs one on a plain image).
  * The key of step s of map k is `fold_in(steps_key_k, s)` (`render`); a
    composition splits it, one key per transform.
  * `out_sides(sides)` lists the possible output sides; `spec()` is JSON-able,
    for records and identity hashes.

lucent 0.1.8 computes its warps with kornia 0.4.1, whose pixel-to-[-1, 1]
matrix assumes aligned corners while `grid_sample` does not: a jitter of d px
moves the image by d * W / (W - 1) px, bilinearly, and that matrix's entries
are float32. `_kornia_source_of` reproduces exactly that, so the lucid recipe
equals lucent's (tested); it is a quirk of the reference, kept on purpose.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ops

Sides = tuple[int, ...]


class Transform:
  """Base class: subclasses are frozen dataclasses defining `draw`, `apply` and `spec`."""

  def draw(self, key: jax.Array):
    return None

  def out_sides(self, sides: Sides) -> Sides:
    return sides

  def apply(self, choices, images: jax.Array, which: jax.Array, sides: Sides):
    raise NotImplementedError

  def spec(self) -> dict:
    raise NotImplementedError


def _constant(table: np.ndarray, dtype) -> jax.Array:
  """A host table as a constant of the render's dtype, cast on the host: XLA would fold
  a cast of a large constant element by element, seconds per program."""
  return jnp.asarray(table.astype(np.dtype(dtype)))


def valid_mask(which: jax.Array, sides: Sides, canvas: int, dtype) -> jax.Array:
  """(canvas, canvas, 1): 1 inside the valid S x S square (S = sides[which]), 0 outside."""
  side = jnp.asarray(sides, jnp.int32)[which]
  inside = jnp.arange(canvas) < side
  return (inside[:, None] & inside[None, :]).astype(dtype)[..., None]


@dataclasses.dataclass(frozen=True)
class Compose(Transform):
  """The transforms in order; empty is the identity (the write-up uses none)."""

  transforms: tuple[Transform, ...] = ()

  def draw(self, key):
    if not self.transforms:
      return ()
    keys = jax.random.split(key, len(self.transforms))
    return tuple(t.draw(k) for t, k in zip(self.transforms, keys))

  def out_sides(self, sides):
    for transform in self.transforms:
      sides = transform.out_sides(sides)
    return sides

  def apply(self, choices, images, which, sides):
    for transform, choice in zip(self.transforms, choices):
      images, which = transform.apply(choice, images, which, sides)
      sides = transform.out_sides(sides)
    return images, which

  def __bool__(self) -> bool:
    return bool(self.transforms)

  def spec(self) -> dict:
    return {"compose": [t.spec() for t in self.transforms]}


def eager(transform: Transform, choices, images) -> np.ndarray:
  """`transform` with concrete `choices` on square images (N, S, S, 3), returned at their
  real side (not on a canvas): for tests and for looking at one draw."""
  images = jnp.asarray(images)
  sides = (images.shape[1],)
  out, which = transform.apply(choices, images, jnp.int32(0), sides)
  side = transform.out_sides(sides)[int(which)]
  return np.asarray(out[:, :side, :side])


@dataclasses.dataclass(frozen=True)
class Pad(Transform):
  """`width` pixels of `value` on every side (lucent's pad(mode="constant"))."""

  width: int
  value: float = 0.5

  def out_sides(self, sides):
    return tuple(side + 2 * self.width for side in sides)

  def apply(self, choices, images, which, sides):
    w = self.width
    padded = jnp.pad(images, ((0, 0), (w, w), (w, w), (0, 0)))
    canvas = padded.shape[1]
    side = jnp.asarray(sides, jnp.int32)[which]
    coords = jnp.arange(canvas)
    image_part = (coords >= w) & (coords < w + side)
    border = coords < side + 2 * w
    on_image = (image_part[:, None] & image_part[None, :])[..., None]
    on_border = (border[:, None] & border[None, :])[..., None]
    value = jnp.asarray(self.value, images.dtype)
    return jnp.where(on_image, padded, jnp.where(on_border, value, 0)), which

  def spec(self) -> dict:
    return {"pad": dataclasses.asdict(self)}


def _kornia_source_of(matrix: np.ndarray, side: int) -> np.ndarray:
  """The (3, 3) output-pixel -> source-pixel map of `kornia.warp_affine(M)` 0.4.1 on a
  side x side image, in float64.

  `matrix` (3, 3) maps source to destination pixels. kornia normalises it with
  N (aligned corners; entries 2 / (side - 1) in float32) and samples with
  `grid_sample(align_corners=False)` (P): source = P^-1 N M^-1 N^-1 P.
  """
  n = np.array([[np.float32(2.0 / (side - 1)), 0, -1],
                [0, np.float32(2.0 / (side - 1)), -1], [0, 0, 1]], np.float64)
  p = np.array([[2.0 / side, 0, 1.0 / side - 1], [0, 2.0 / side, 1.0 / side - 1], [0, 0, 1]])
  inv = np.linalg.inv
  return inv(p) @ n @ inv(np.asarray(matrix, np.float64)) @ inv(n) @ p


def _warp(images: jax.Array, source_of: jax.Array, which, sides: Sides) -> jax.Array:
  """Each image of the group warped by `source_of` (3, 3), on the canvas: zeros outside
  the valid square, as outside the image in kornia."""
  warped = jax.vmap(lambda image: ops.warp_bilinear(image, source_of))(images)
  return warped * valid_mask(which, sides, images.shape[1], images.dtype)


@dataclasses.dataclass(frozen=True)
class Jitter(Transform):
  """lucent's jitter(d): a shift by (dx, dy), each uniform in 0..d-1, right and down
  (sub-pixel as kornia 0.4.1 makes it: see the module docstring), zeros behind."""

  distance: int

  def draw(self, key):
    return jax.random.randint(key, (2,), 0, self.distance, dtype=jnp.int32)

  @functools.lru_cache(maxsize=None)
  def table(self, sides: Sides) -> np.ndarray:
    """(len(sides), d, d, 3, 3) float64: the source map of every side and shift."""
    table = np.zeros((len(sides), self.distance, self.distance, 3, 3))
    for i, side in enumerate(sides):
      for dx in range(self.distance):
        for dy in range(self.distance):
          shift = np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1]])
          table[i, dx, dy] = _kornia_source_of(shift, side)
    return table

  def apply(self, shift, images, which, sides):
    # A translation's source map is x - t, y - u: two one-axis interpolations, as
    # matrices built from the source offsets (no gather: a fraction of the compile time).
    source_of = _constant(self.table(sides), images.dtype)[which, shift[0], shift[1]]
    canvas = images.shape[1]
    rows = ops.shift_matrix(canvas, source_of[1, 2])
    cols = ops.shift_matrix(canvas, source_of[0, 2])
    mask = valid_mask(which, sides, canvas, images.dtype)
    return jax.vmap(lambda image: ops.separable(image, rows, cols))(images) * mask, which

  def spec(self) -> dict:
    return {"jitter": self.distance}


@dataclasses.dataclass(frozen=True)
class RandomScale(Transform):
  """lucent's random_scale: one of `scales`, a bilinear (aligned corners) resize to
  ceil(scale * side), then zeros padded back to about the side: ceil((side - new) / 2)
  on each side (lucent's order puts pad_y top and left, pad_x bottom and right; equal
  for square images). Output side index: input index * len(scales) + the scale's."""

  scales: tuple[float, ...]

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.scales), dtype=jnp.int32)

  def _geometry(self, side: int, scale: float) -> tuple[int, int]:
    """(resized side, padding each side) of one scale of a side-px image."""
    new = math.ceil(scale * side)
    return new, max(0, math.ceil((side - new) / 2))

  def out_sides(self, sides):
    return tuple(new + 2 * pad for side in sides
                 for new, pad in (self._geometry(side, scale) for scale in self.scales))

  @functools.lru_cache(maxsize=None)
  def table(self, sides: Sides) -> np.ndarray:
    """(len(sides), len(scales), out canvas, in canvas) float64: each resize and its
    padding as one matrix (rows of the padding and columns past the side are 0)."""
    canvas_in, canvas_out = max(sides), max(self.out_sides(sides))
    table = np.zeros((len(sides), len(self.scales), canvas_out, canvas_in))
    for i, side in enumerate(sides):
      for v, scale in enumerate(self.scales):
        new, pad = self._geometry(side, scale)
        table[i, v, pad:pad + new, :side] = ops.linear_align_corners_matrix(side, new)
    return table

  def apply(self, variant, images, which, sides):
    matrix = _constant(self.table(sides), images.dtype)[which, variant]
    resized = jax.vmap(lambda image: ops.separable(image, matrix, matrix))(images)
    return resized, which * len(self.scales) + variant

  def spec(self) -> dict:
    return {"random_scale": list(self.scales)}


def kornia_rotation(degrees: float, side: int) -> np.ndarray:
  """The (3, 3) float32 matrix `kornia.get_rotation_matrix2d` 0.4.1 builds for lucent's
  random_rotate on a side x side image, operation by operation in float32: radians =
  degrees * pi / 180 (pi as float32), alpha = cos, beta = sin, centre (side - 1) / 2,
  and [[alpha, beta, (1 - alpha) cx - beta cy], [-beta, alpha, beta cx + (1 - alpha) cy]].

  cos and sin are correctly rounded to float32. torch's own float32 cosine is one
  ulp off that at +-4 degrees (its vectorised cos), so there the matrices differ
  in their last bit; elsewhere, for lucid's angles, they are equal.
  """
  f32 = np.float32
  radians = f32(f32(degrees) * f32(np.pi)) / f32(180.0)
  alpha, beta = f32(np.cos(np.float64(radians))), f32(np.sin(np.float64(radians)))
  centre = f32((side - 1) / 2.0)
  one = f32(1.0)
  return np.array([[alpha, beta, f32(f32(one - alpha) * centre) - f32(beta * centre)],
                   [-beta, alpha, f32(beta * centre) + f32(f32(one - alpha) * centre)],
                   [0, 0, 1]], np.float32)


@dataclasses.dataclass(frozen=True)
class RandomRotate(Transform):
  """lucent's random_rotate: one of `angles` (degrees; repeats weigh more), about the
  image centre, bilinear, zeros outside, with kornia's float32 matrix
  (`kornia_rotation`)."""

  angles: tuple[float, ...]

  def draw(self, key):
    return jax.random.randint(key, (), 0, len(self.angles), dtype=jnp.int32)

  @functools.lru_cache(maxsize=None)
  def table(self, sides: Sides) -> np.ndarray:
    """(len(sides), len(angles), 3, 3) float64: the source map of every side and angle."""
    return np.array([[_kornia_source_of(kornia_rotation(angle, side), side)
                      for angle in self.angles] for side in sides])

  def apply(self, index, images, which, sides):
    source_of = _constant(self.table(sides), images.dtype)[which, index]
    return _warp(images, source_of, which, sides), which

  def spec(self) -> dict:
    return {"random_rotate": list(self.angles)}


def lucid_standard() -> Compose:
  """lucid's (and lucent's) standard transforms: pad 12 with 0.5, jitter 8, scale
  1 + (i - 5) / 50 for i in 0..10, rotate -10..10 degrees with five more zeros, jitter 4."""
  return Compose((Pad(12, 0.5), Jitter(8),
                  RandomScale(tuple(1 + (i - 5) / 50.0 for i in range(11))),
                  RandomRotate(tuple(float(a) for a in list(range(-10, 11)) + 5 * [0])),
                  Jitter(4)))


@functools.lru_cache(maxsize=64)
def _resize_table(sides: Sides, side: int) -> np.ndarray:
  table = np.zeros((len(sides), side, max(sides)))
  for i, valid in enumerate(sides):
    table[i, :, :valid] = ops.linear_align_corners_matrix(valid, side)
  return table


def resize(images: jax.Array, which: jax.Array, sides: Sides, side: int) -> jax.Array:
  """The valid square of each canvas image resized to side x side (bilinear, aligned
  corners: lucent's upsampling to the model's 224 px), (N, side, side, C)."""
  matrix = _constant(_resize_table(sides, side), images.dtype)[which]
  return jax.vmap(lambda image: ops.separable(image, matrix, matrix))(images)


@dataclasses.dataclass(frozen=True)
class CropsWithNoise(Transform):
  """MACO's step (horama's `optimization_step`): `crops` square crops of each image,
  each resized to `side` and noised.

  Crop k: centre (x0, y0) = 0.5 + 0.15 * normal, side delta * S (S the image
  side) with delta uniform in [box[1], 2 * box[1] - box[0]) (horama offsets by
  the upper bound: its quirk, kept), RoIAlign to 2 * side, an antialiased
  bicubic (Keys a = -0.5) to `side`, then + noise * normal and
  + noise * (uniform - 0.5). It takes images of one side (it comes first).
  """

  crops: int = 6
  box: tuple[float, float] = (0.20, 0.25)
  noise: float = 0.05
  side: int = 224

  def draw(self, key):
    centre_x, centre_y, size, gauss, flat = jax.random.split(key, 5)
    shape = (self.crops, self.side, self.side, 3)
    f32 = jnp.float32
    return {"x0": 0.5 + jax.random.normal(centre_x, (self.crops,), f32) * 0.15,
            "y0": 0.5 + jax.random.normal(centre_y, (self.crops,), f32) * 0.15,
            "delta": jax.random.uniform(size, (self.crops,), f32) * (self.box[1] - self.box[0])
                     + self.box[1],
            "gauss": jax.random.normal(gauss, shape, f32),
            "uniform": jax.random.uniform(flat, shape, f32)}

  @property
  def largest_fraction(self) -> float:
    """The largest crop side as a fraction of the image side."""
    return 2 * self.box[1] - self.box[0]

  def out_sides(self, sides):
    return (self.side,)

  def apply(self, draw, images, which=0, sides=None):
    image_side = images.shape[1]
    if sides is not None and tuple(sides) != (image_side,):
      raise ValueError("CropsWithNoise takes images of one side: put it first")
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

    crops = jax.vmap(crops_of)(images).reshape(-1, self.side, self.side, images.shape[-1])
    return crops, jnp.zeros_like(jnp.asarray(which, jnp.int32))

  def spec(self) -> dict:
    return {"crops_with_noise": dataclasses.asdict(self)}

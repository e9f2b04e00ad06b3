"""Image operations on the device, matching the write-up's OpenCV calls exactly.

Conventions:
  * One image is (H, W, C), channels last, float; batch with `jax.vmap`.
  * Pixel values are RGB in [0, 1] unless a function says "normalised".
  * Sizes are static Python ints (they set shapes), never traced values.

`cv2.resize(INTER_CUBIC)` is Keys' cubic with a = -0.75, half-pixel centres,
edge pixels replicated and no antialiasing when shrinking; torch's
`F.interpolate(mode="bicubic", align_corners=False)` is the same function.
`jax.image.resize(method="cubic")` is not (a = -0.5, antialiased on shrink),
so the resize here is two small interpolation matrices built in float64.
"""

from __future__ import annotations

import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

from jaxviz.errors import JaxvizError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENCV_CUBIC_A = -0.75


def normalise(image: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """RGB in [0, 1] -> the network's input: (x - mean) / std per channel."""
  return (image - jnp.asarray(mean, image.dtype)) / jnp.asarray(std, image.dtype)


def denormalise(image: jax.Array, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> jax.Array:
  """Inverse of `normalise`; does not clip."""
  return image * jnp.asarray(std, image.dtype) + jnp.asarray(mean, image.dtype)


def _keys_cubic(t: np.ndarray, a: float) -> np.ndarray:
  """Keys' cubic convolution kernel at offsets t (any sign)."""
  t = np.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@functools.lru_cache(maxsize=256)
def cubic_resize_matrix(in_size: int, out_size: int, a: float = OPENCV_CUBIC_A) -> np.ndarray:
  """(out_size, in_size) float64 matrix M with resized = M @ signal.

  Output pixel i samples the input at x = (i + 0.5) * in/out - 0.5 from the
  four taps floor(x) - 1 .. floor(x) + 2, each index clamped into the image
  (edge replicate). Cached because the render loop asks for the same few
  sizes over and over while tracing; callers must not modify the result.
  """
  if in_size < 1 or out_size < 1:
    raise JaxvizError(f"cannot resize between sizes {in_size} and {out_size}")
  scale = in_size / out_size
  source = (np.arange(out_size) + 0.5) * scale - 0.5
  base = np.floor(source)
  matrix = np.zeros((out_size, in_size))
  rows = np.arange(out_size)
  for tap in range(-1, 3):
    weight = _keys_cubic(source - (base + tap), a)
    column = np.clip(base + tap, 0, in_size - 1).astype(int)
    np.add.at(matrix, (rows, column), weight)
  matrix.setflags(write=False)
  return matrix


def separable(image: jax.Array, rows, cols) -> jax.Array:
  """(H, W, C) -> (len(rows), len(cols), C) with row and column weight matrices (numpy
  or traced: a transform's table row)."""
  # HIGHEST: on GPU the default would round the weights to TF32.
  return jnp.einsum("oh,hwc,pw->opc", jnp.asarray(rows, image.dtype), image,
                    jnp.asarray(cols, image.dtype), precision=jax.lax.Precision.HIGHEST)


def resize_bicubic(image: jax.Array, height: int, width: int) -> jax.Array:
  """(H, W, C) -> (height, width, C), OpenCV INTER_CUBIC / torch bicubic.

  Values are not clipped: cubic interpolation overshoots near edges, as the
  originals do.
  """
  return separable(image, cubic_resize_matrix(image.shape[0], height),
                    cubic_resize_matrix(image.shape[1], width))


def box_blur(image: jax.Array, size: int) -> jax.Array:
  """(H, W, C) -> (H, W, C), `cv2.blur(image, (size, size))`.

  A size x size mean filter with OpenCV's default border, BORDER_REFLECT_101
  (reflect without repeating the edge pixel, numpy's "reflect"). Only odd
  sizes: OpenCV centres even kernels off by one, which no one asks for here.
  `size` 1 returns the image unchanged.
  """
  if size < 1 or size % 2 == 0:
    raise JaxvizError(f"blur size must be a positive odd number, got {size}")
  if size == 1:
    return image
  height, width, _ = image.shape
  if min(height, width) <= size // 2:
    raise JaxvizError(f"a {size}x{size} blur needs an image of side > {size // 2}")
  padded = dm_pix.pad_to_size(image, height + size - 1, width + size - 1, mode="reflect")
  window_sum = jax.lax.reduce_window(padded, 0.0, jax.lax.add, (size, size, 1), (1, 1, 1),
                                     "VALID")
  return window_sum / (size * size)



# The ops below serve the modern recipes (`jaxviz.optvis`): lucent's bilinear
# resizes and affine warps, horama's antialiased bicubic and RoIAlign crops.

@functools.lru_cache(maxsize=256)
def linear_align_corners_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size): torch's bilinear with align_corners=True along one axis.

  Output i samples x = i * (in - 1) / (out - 1) (0 when out is 1) between its two
  neighbours; no antialiasing.
  """
  if in_size < 1 or out_size < 1:
    raise JaxvizError(f"cannot resize between sizes {in_size} and {out_size}")
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  source = np.arange(out_size) * scale
  low = np.minimum(np.floor(source).astype(int), in_size - 1)
  high = np.minimum(low + 1, in_size - 1)
  frac = source - low
  matrix = np.zeros((out_size, in_size))
  np.add.at(matrix, (np.arange(out_size), low), 1 - frac)
  np.add.at(matrix, (np.arange(out_size), high), frac)
  matrix.setflags(write=False)
  return matrix


def resize_bilinear_align_corners(image: jax.Array, height: int, width: int) -> jax.Array:
  """(H, W, C) -> (height, width, C): `F.interpolate(mode="bilinear",
  align_corners=True)`, lucent's `Upsample` and `random_scale`."""
  return separable(image, linear_align_corners_matrix(image.shape[0], height),
                    linear_align_corners_matrix(image.shape[1], width))


@functools.lru_cache(maxsize=64)
def antialiased_cubic_align_corners_matrix(in_size: int, out_size: int,
                                           a: float = -0.5) -> np.ndarray:
  """(out_size, in_size): torch's `interpolate(mode="bicubic", align_corners=True,
  antialias=True)` along one axis (horama's crop resize).

  scale = (in - 1) / (out - 1); a shrink widens Keys' kernel (a = -0.5) by the
  scale; output i centres on scale * (i + 0.5) and its weights are normalised.
  """
  scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
  support = 2.0 * scale if scale >= 1.0 else 2.0
  inverse = 1.0 / scale if scale >= 1.0 else 1.0
  matrix = np.zeros((out_size, in_size))
  for i in range(out_size):
    centre = scale * (i + 0.5)
    low = max(int(centre - support + 0.5), 0)
    high = min(int(centre + support + 0.5), in_size)
    taps = np.arange(low, high)
    weights = _keys_cubic((taps - centre + 0.5) * inverse, a)
    matrix[i, taps] = weights / weights.sum()
  matrix.setflags(write=False)
  return matrix


def resize_antialiased_cubic(image: jax.Array, height: int, width: int) -> jax.Array:
  """(H, W, C) -> (height, width, C), horama's `F.interpolate(mode="bicubic",
  align_corners=True, antialias=True)` (Keys a = -0.5, not OpenCV's -0.75)."""
  return separable(image, antialiased_cubic_align_corners_matrix(image.shape[0], height),
                    antialiased_cubic_align_corners_matrix(image.shape[1], width))


def shift_matrix(size: int, offset: jax.Array) -> jax.Array:
  """(size, size): out[i] = signal sampled at i + offset, bilinear, zeros outside (as
  `warp_bilinear` samples a translation, one axis at a time); `offset` may be traced."""
  low = jnp.floor(offset)
  frac = offset - low
  source = jnp.arange(size)[:, None] + low.astype(jnp.int32)
  columns = jnp.arange(size)[None, :]
  dtype = jnp.result_type(offset)
  return (jnp.where(columns == source, 1 - frac, 0).astype(dtype)
          + jnp.where(columns == source + 1, frac, 0).astype(dtype))


def warp_bilinear(image: jax.Array, source_of: jax.Array) -> jax.Array:
  """(H, W, C) -> (H, W, C): out[y, x] = image sampled at `source_of @ (x, y, 1)`.

  `source_of` (3, 3) maps output pixel coordinates (pixel centres at integers)
  to source ones. Bilinear, zeros outside the image, as `grid_sample(padding_mode=
  "zeros")`: each of the four neighbours outside contributes 0. `source_of`
  may be traced (a random transform's draw).
  """
  height, width, _ = image.shape
  ys, xs = jnp.meshgrid(jnp.arange(height, dtype=image.dtype),
                        jnp.arange(width, dtype=image.dtype), indexing="ij")
  points = jnp.stack([xs, ys, jnp.ones_like(xs)], axis=-1) @ source_of.T.astype(image.dtype)
  x, y = points[..., 0], points[..., 1]
  x0, y0 = jnp.floor(x), jnp.floor(y)
  # The four neighbours in one gather from the flattened image (one gather, and one
  # scatter in the gradient, compile far faster than four).
  corners = ((0, 0), (1, 0), (0, 1), (1, 1))
  xi = jnp.stack([x0 + dx for dx, _ in corners])
  yi = jnp.stack([y0 + dy for _, dy in corners])
  weights = (1 - jnp.abs(x - xi)) * (1 - jnp.abs(y - yi))
  inside = (xi >= 0) & (xi <= width - 1) & (yi >= 0) & (yi <= height - 1)
  index = (jnp.clip(yi, 0, height - 1).astype(jnp.int32) * width
           + jnp.clip(xi, 0, width - 1).astype(jnp.int32))
  pixels = image.reshape(height * width, -1)[index]
  terms = jnp.where(inside, weights, 0)[..., None] * pixels
  return ((terms[0] + terms[1]) + terms[2]) + terms[3]


def roi_align(image: jax.Array, box: jax.Array, side: int) -> jax.Array:
  """(H, W, C), box (x1, y1, x2, y2) in pixels -> (side, side, C): torchvision's
  `roi_align(output_size=side, spatial_scale=1, sampling_ratio=-1, aligned=False)`
  when every bin holds one sample (box sides at most `side`, as horama's crops
  are: the caller checks).

  Bin (i, j) samples (x1 + (j + 0.5) * w / side, y1 + (i + 0.5) * h / side),
  w = max(x2 - x1, 1); bilinear with torchvision's borders: 0 beyond one pixel
  outside, coordinates clamped at 0, the last row/column used past it.
  """
  height, width, _ = image.shape
  x1, y1, x2, y2 = box[0], box[1], box[2], box[3]
  bin_w = jnp.maximum(x2 - x1, 1.0) / side
  bin_h = jnp.maximum(y2 - y1, 1.0) / side
  centres = jnp.arange(side, dtype=image.dtype) + 0.5
  xs, ys = x1 + centres * bin_w, y1 + centres * bin_h

  def taps(coord, size):
    outside = (coord < -1.0) | (coord > size)
    coord = jnp.maximum(coord, 0.0)
    low = jnp.floor(coord).astype(jnp.int32)
    last = low >= size - 1
    low = jnp.where(last, size - 1, low)
    high = jnp.where(last, size - 1, low + 1)
    frac = jnp.where(last, 0.0, coord - low)
    return low, high, frac, outside

  x_low, x_high, x_frac, x_out = taps(xs, width)
  y_low, y_high, y_frac, y_out = taps(ys, height)
  rows = (image[y_low] * (1 - y_frac)[:, None, None] + image[y_high] * y_frac[:, None, None])
  values = (rows[:, x_low] * (1 - x_frac)[None, :, None]
            + rows[:, x_high] * x_frac[None, :, None])
  return jnp.where((y_out[:, None] | x_out[None, :])[..., None], 0.0, values)

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


def normalise(image: jax.Array) -> jax.Array:
  """RGB in [0, 1] -> the network's input: (x - mean) / std per channel."""
  mean = jnp.asarray(IMAGENET_MEAN, image.dtype)
  std = jnp.asarray(IMAGENET_STD, image.dtype)
  return (image - mean) / std


def denormalise(image: jax.Array) -> jax.Array:
  """Inverse of `normalise`; does not clip."""
  mean = jnp.asarray(IMAGENET_MEAN, image.dtype)
  std = jnp.asarray(IMAGENET_STD, image.dtype)
  return image * std + mean


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


def resize_bicubic(image: jax.Array, height: int, width: int) -> jax.Array:
  """(H, W, C) -> (height, width, C), OpenCV INTER_CUBIC / torch bicubic.

  Values are not clipped: cubic interpolation overshoots near edges, as the
  originals do.
  """
  rows = jnp.asarray(cubic_resize_matrix(image.shape[0], height), image.dtype)
  cols = jnp.asarray(cubic_resize_matrix(image.shape[1], width), image.dtype)
  # HIGHEST: on GPU the default would round these weights to TF32.
  return jnp.einsum("oh,hwc,pw->opc", rows, image, cols, precision=jax.lax.Precision.HIGHEST)


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


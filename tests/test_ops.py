"""Image ops against their live references: torch's F.interpolate / avg_pool and OpenCV.

Tolerances: float64 within 1e-12 of torch (the same arithmetic); OpenCV's
float32 path within 1e-5; float32 ours within 1e-5. Each op is also rerun
under jit and vmap (dm-pix style).
"""

from __future__ import annotations

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from jaxviz import ops
from jaxviz.errors import JaxvizError

# (in_h, in_w, out_h, out_w): the render's x1.2 steps, the probe's shrink to 224,
# a non-square photo, and extreme ratios both ways.
RESIZES = [(56, 56, 67, 67), (340, 340, 408, 408), (67, 67, 56, 56), (375, 500, 224, 224),
           (408, 408, 224, 224), (5, 7, 13, 11), (13, 17, 3, 2), (1, 4, 3, 1)]


def torch_bicubic(image: np.ndarray, height: int, width: int) -> np.ndarray:
  x = torch.from_numpy(image).permute(2, 0, 1)[None]
  y = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False,
                    antialias=False)
  return y[0].permute(1, 2, 0).numpy()


def torch_box_blur(image: np.ndarray, size: int) -> np.ndarray:
  x = torch.from_numpy(image).permute(2, 0, 1)[None]
  pad = size // 2
  y = F.avg_pool2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), size, stride=1)
  return y[0].permute(1, 2, 0).numpy()


def random_image(shape, dtype, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(-0.5, 1.5, size=shape).astype(dtype)


@pytest.mark.parametrize("in_h,in_w,out_h,out_w", RESIZES)
def test_bicubic_matches_torch_float64(in_h, in_w, out_h, out_w):
  with jax.enable_x64(True):
    image = random_image((in_h, in_w, 3), np.float64)
    ours = np.asarray(ops.resize_bicubic(jnp.asarray(image), out_h, out_w))
  assert ours.dtype == np.float64
  np.testing.assert_allclose(ours, torch_bicubic(image, out_h, out_w), rtol=0, atol=1e-12)


@pytest.mark.parametrize("in_h,in_w,out_h,out_w", RESIZES)
def test_bicubic_matches_opencv_inter_cubic(in_h, in_w, out_h, out_w):
  image = random_image((in_h, in_w, 3), np.float32)
  expected = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
  ours = np.asarray(ops.resize_bicubic(jnp.asarray(image), out_h, out_w))
  np.testing.assert_allclose(ours, expected.reshape(ours.shape), rtol=0, atol=1e-5)


def test_bicubic_is_not_jax_image_resize():
  """Guards the reason this op exists: jax's cubic differs from OpenCV's."""
  image = jnp.asarray(random_image((56, 56, 3), np.float32))
  theirs = jax.image.resize(image, (67, 67, 3), method="cubic")
  assert float(jnp.abs(theirs - ops.resize_bicubic(image, 67, 67)).max()) > 1e-3


def test_bicubic_under_jit_and_vmap():
  images = jnp.asarray(random_image((4, 20, 24, 3), np.float32))
  one_by_one = jnp.stack([ops.resize_bicubic(image, 9, 31) for image in images])
  batched = jax.jit(jax.vmap(lambda image: ops.resize_bicubic(image, 9, 31)))(images)
  np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [3, 5, 7])
@pytest.mark.parametrize("shape", [(56, 56, 3), (67, 40, 3), (8, 9, 1)])
def test_box_blur_matches_torch_and_opencv(size, shape):
  with jax.enable_x64(True):
    image = random_image(shape, np.float64)
    ours = np.asarray(ops.box_blur(jnp.asarray(image), size))
  np.testing.assert_allclose(ours, torch_box_blur(image, size), rtol=0, atol=1e-12)
  expected = cv2.blur(image, (size, size))  # BORDER_REFLECT_101 by default
  np.testing.assert_allclose(ours, expected.reshape(ours.shape), rtol=0, atol=1e-12)


def test_box_blur_under_jit_and_vmap():
  images = jnp.asarray(random_image((3, 16, 16, 3), np.float32))
  one_by_one = jnp.stack([ops.box_blur(image, 5) for image in images])
  batched = jax.jit(jax.vmap(lambda image: ops.box_blur(image, 5)))(images)
  np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-6)


def test_box_blur_rejects_even_and_oversized_kernels():
  image = jnp.zeros((4, 4, 3))
  with pytest.raises(JaxvizError, match="odd"):
    ops.box_blur(image, 4)
  with pytest.raises(JaxvizError, match="side"):
    ops.box_blur(image, 9)
  np.testing.assert_array_equal(ops.box_blur(image + 1, 1), image + 1)


def test_normalise_round_trip_and_constants():
  image = jnp.asarray(random_image((5, 5, 3), np.float32))
  expected = (np.asarray(image) - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
  np.testing.assert_allclose(ops.normalise(image), expected, rtol=0, atol=1e-6)
  np.testing.assert_allclose(ops.denormalise(ops.normalise(image)), image, atol=1e-6)

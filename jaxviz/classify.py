"""ImageNet classification of a photo: the quick proof that converted weights are right."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import ops, vgg
from jaxviz.weights import Weights

INPUT_SIDE = 224


def photo_to_input(photo: np.ndarray, side: int = INPUT_SIDE) -> jax.Array:
  """(H, W, 3) RGB in [0, 1] -> (side, side, 3) network input (SPEC §3 step 1).

  OpenCV-style bicubic resize to a square (aspect not kept, as the write-up
  does), then ImageNet normalisation.
  """
  photo = jnp.asarray(photo, jnp.float32)
  return ops.normalise(ops.resize_bicubic(photo, side, side))


@functools.partial(jax.jit, static_argnames=("arch", "precision"))
def _logits(params, images, arch, precision):
  return vgg.logits(params, images, arch=arch, precision=precision)


def classify(weights: Weights, photo: np.ndarray, top: int = 5,
             precision: str = "default") -> list[dict]:
  """Top-`top` ImageNet classes of one photo.

  Returns:
    [{"index", "label", "prob", "logit"}, ...] by descending probability;
    "label" is the class name when the weights carry them, else "class N".
  """
  images = photo_to_input(photo)[None]
  logits = np.asarray(_logits(weights.params, images, weights.arch, precision)[0], np.float64)
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  order = np.argsort(-logits, kind="stable")[:top]
  names = weights.categories or ()
  return [{"index": int(i), "label": names[i] if i < len(names) else f"class {i}",
           "prob": float(probs[i]), "logit": float(logits[i])} for i in order]

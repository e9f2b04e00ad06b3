"""Classification of a photo (ImageNet's classes; 1008 for inceptionv1): the quick proof
that converted weights are right."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import nets, ops
from jaxviz.nets import networks
from jaxviz.weights import Weights

INPUT_SIDE = 224


def photo_to_input(photo: np.ndarray, arch: str = "vgg16", side: int = INPUT_SIDE) -> jax.Array:
  """(H, W, 3) RGB in [0, 1] -> (side, side, 3) input of `arch`'s network (SPEC §3 step 1).

  OpenCV-style bicubic resize to a square (aspect not kept, as the write-up
  does), then the arch's normalisation (ImageNet's for VGG, `nets.normalisation`).
  """
  photo = jnp.asarray(photo, jnp.float32)
  return ops.normalise(ops.resize_bicubic(photo, side, side), *nets.normalisation(arch))


@functools.partial(jax.jit, static_argnames=("arch", "precision"))
def _logits(params, images, arch, precision):
  return networks.logits(params, images, arch=arch, precision=precision)


def classify(weights: Weights, photo: np.ndarray, top: int = 5,
             precision: str = "default") -> list[dict]:
  """Top-`top` ImageNet classes of one photo.

  Returns:
    [{"index", "label", "prob", "logit"}, ...] by descending probability;
    "label" is the class name when the weights carry them, else "class N".
  """
  images = photo_to_input(photo, weights.arch)[None]
  logits = np.asarray(_logits(weights.params, images, weights.arch, precision)[0], np.float64)
  probs = np.exp(logits - logits.max())
  probs /= probs.sum()
  order = np.argsort(-logits, kind="stable")[:top]
  names = weights.categories or ()
  return [{"index": int(i), "label": names[i] if i < len(names) else f"class {i}",
           "prob": float(probs[i]), "logit": float(logits[i])} for i in order]

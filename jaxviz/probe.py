"""The write-up's hypothesis test (SPEC §3), and ranking a folder of photos by a map.

Conventions:
  * A photo is (H, W, 3) RGB in [0, 1]; it is resized to 224x224 with the
    OpenCV-style bicubic and normalised (`classify.photo_to_input`).
  * A map's score on a photo is the mean over positions of its channel at
    the layer, read as SPEC §1 says (a conv layer after its ReLU, so every
    mean is >= 0, unless `pre_relu`). Ranks are 1-based, descending, ties
    broken by the lower map index.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import fileio, nets, ops, vgg
from jaxviz.classify import INPUT_SIDE, photo_to_input
from jaxviz.errors import JaxvizError
from jaxviz.nets import networks
from jaxviz.reprs import ShortRepr
from jaxviz.vgg import Target
from jaxviz.weights import Weights

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


@functools.partial(jax.jit, static_argnames=("target",))
def channel_means(params: vgg.Params, images: jax.Array, target: Target) -> jax.Array:
  """(N, H, W, 3) normalised -> (N, channels): each map's mean activation per image."""
  activation = networks.layer_activation(params, images, target.read, arch=target.arch,
                                         precision=target.precision)
  return activation.mean(axis=(1, 2))


def ranking(means: np.ndarray) -> np.ndarray:
  """Map indices ordered by descending mean (stable: ties keep index order)."""
  return np.argsort(-np.asarray(means), kind="stable")


@dataclasses.dataclass(frozen=True, repr=False)
class ProbeResult(ShortRepr):
  """Per-channel means of one photo at one layer, ranked.

  Attributes:
    photo: the (224, 224, 3) resized photo in [0, 1], for the figure.
    means: (channels,) mean activation per map.
    top: [(rank, map, mean)] for the top k.
    asked: {map: (rank, mean)} for each map the user named.
  """

  target: Target
  photo: np.ndarray
  means: np.ndarray
  top: list[tuple[int, int, float]]
  asked: dict[int, tuple[int, float]]

  def to_json(self, image: str, weights_label: str) -> dict:
    return {"image": image, **self.target.provenance(),
            "weights": weights_label, "means": [float(m) for m in self.means],
            "top": [{"rank": r, "map": m, "mean": v} for r, m, v in self.top],
            "maps": {str(m): {"rank": r, "mean": v} for m, (r, v) in self.asked.items()}}


def check_finite_means(means: np.ndarray, target: Target, source: str) -> None:
  """Refuses NaN or infinite means (weights whose activations overflow) rather than rank them."""
  if not np.isfinite(means).all():
    raise JaxvizError(f"{target.describe()} has non-finite activations on {source}: the "
                      "weights overflow float32 here, so no ranking is meaningful")


def probe(weights: Weights, photo: np.ndarray, target: Target, *, top: int = 15,
          maps: Sequence[int] = ()) -> ProbeResult:
  """Ranks the target layer's maps by their mean activation on `photo` (SPEC §3)."""
  layer = target.layer
  if not 1 <= top <= layer.channels:
    raise JaxvizError(f"--top must be between 1 and {layer.channels} for layer {layer.index} "
                      f"({layer.name}), got {top}")
  for map_index in maps:
    if not 0 <= map_index < layer.channels:
      raise JaxvizError(f"map {map_index} is out of range: layer {layer.index} ({layer.name}) "
                        f"has {layer.channels} maps (0..{layer.channels - 1})")
  resized = ops.resize_bicubic(jnp.asarray(photo, jnp.float32), INPUT_SIDE, INPUT_SIDE)
  params = weights.subset(networks.needed_modules(target.read, target.arch))
  inputs = ops.normalise(resized, *nets.normalisation(target.arch))[None]
  means = np.asarray(channel_means(params, inputs, target)[0], np.float64)
  check_finite_means(means, target, "the photo")
  order = ranking(means)
  rank_of = np.empty_like(order)
  rank_of[order] = np.arange(1, len(order) + 1)
  return ProbeResult(
      target=target,
      photo=np.clip(np.asarray(resized), 0, 1),
      means=means,
      top=[(i + 1, int(m), float(means[m])) for i, m in enumerate(order[:top])],
      asked={int(m): (int(rank_of[m]), float(means[m])) for m in maps})


def find_images(folder: str | os.PathLike) -> list[Path]:
  """Every file under `folder` (recursively) with an image suffix, sorted."""
  folder = Path(folder)
  if not folder.is_dir():
    raise JaxvizError(f"not a folder: {folder}")
  found = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower()
                 in IMAGE_SUFFIXES)
  if not found:
    raise JaxvizError(f"no images in {folder} (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
  return found


@dataclasses.dataclass(frozen=True, repr=False)
class FolderScores(ShortRepr):
  """Mean activation of every map of a layer on every readable image of a folder.

  Attributes:
    images: paths of the images scored, row order of `means`.
    means: (len(images), channels).
    skipped: [(path, reason)] for unreadable files.
  """

  images: list[Path]
  means: np.ndarray
  skipped: list[tuple[Path, str]]

  def top_images(self, map_index: int, top: int) -> list[tuple[Path, float]]:
    order = ranking(self.means[:, map_index])[:top]
    return [(self.images[i], float(self.means[i, map_index])) for i in order]


def score_folder(weights: Weights, folder: str | os.PathLike, target: Target, *,
                 batch: int = 16,
                 on_image: Callable[[], None] | None = None,
                 on_skip: Callable[[Path, str], None] | None = None) -> FolderScores:
  """Every map's mean on every image of `folder`, in one batched, jitted pass.

  Unreadable files are skipped (reported through `on_skip`), never fatal. The
  last batch is padded with zeros so every call has the same shape.
  """
  paths = find_images(folder)
  params = weights.subset(networks.needed_modules(target.read, target.arch))
  scored, rows, skipped, pending = [], [], [], []

  def flush():
    if not pending:
      return
    stacked = jnp.stack(pending + [jnp.zeros_like(pending[0])] * (batch - len(pending)))
    means = np.asarray(channel_means(params, stacked, target)[:len(pending)], np.float64)
    for path, row in zip(scored[len(scored) - len(pending):], means):
      check_finite_means(row, target, str(path))
    rows.append(means)
    pending.clear()

  for path in paths:
    try:
      photo = fileio.read_image(path)
    except JaxvizError as error:
      skipped.append((path, str(error)))
      if on_skip:
        on_skip(path, str(error))
    else:
      pending.append(photo_to_input(photo, target.arch))
      scored.append(path)
      if len(pending) == batch:
        flush()
    if on_image:
      on_image()
  flush()
  if not scored:
    raise JaxvizError(f"none of the {len(paths)} image files in {folder} could be read")
  return FolderScores(scored, np.concatenate(rows), skipped)

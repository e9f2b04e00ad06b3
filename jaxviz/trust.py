"""Can a render be trusted? Numbers that set a render beside natural photos.

A render shows what maximises a unit; whether the unit does the same on photos
is another question. Geirhos et al. (ICML 2024, "Don't trust your eyes") build
networks whose renders show anything while their photos' behaviour is unchanged,
and find that renders of ordinary networks often excite a unit along a
different processing path than photos do. The numbers here are cheap checks of
both, per rendered map, against a set of photos (forward passes only):

  * activation: the render's objective over the best photo's (`ratio`), and the
    share of photos it beats (`percentile`); a render above every photo is a
    super-stimulus (`super_stimulus`), which says the render is not a photo-like
    input to the unit, not that it is wrong.
  * path similarity, after Geirhos et al. §4 (there a network's class units and
    photos of the class; here any unit and its top-k photos): at every tap
    from the input up to the rendered one, the mean Spearman correlation of
    the render's activations with those of the unit's top-k photos, set
    between two references from the photos alone: the top-k photos among
    themselves (1) and the top-k photos against the other photos (0),
        similarity = (render~top - top~rest) / (top~top - top~rest).
    1: the render is as alike to the top photos, tap by tap, as they are to
    each other; 0: no more alike than unrelated photos; below 0: less.
    `similarity` is the mean over the taps with a reference (top~top above
    top~rest by at least MIN_GAP), none if fewer than k photos excite the
    unit at all; `off_path` when it is below OFF_PATH.
  * shift robustness (after Olah et al. 2017, "Feature Visualization", whose
    transformation robustness asks a render to survive being moved; ordinary
    adversarial patterns do not, Athalye et al. 2018): the mean of the unit's
    objective over the render moved by 1 px and by `far_shift(side)` px along
    each axis both ways (`shift_offsets`, the pixels moved in reflected from
    the border), over its objective; none if that is not above 0. 1: the
    activation does not depend on where the pattern sits; near 0: it depends
    on its exact pixel grid, as a checkerboard's does. `fragile` below
    FRAGILE_BELOW.

Conventions:
  * The network is an optimisation-core model (`jaxviz.optvis.models`) and
    `path` its taps from the input up to the rendered one, in order.
  * Images are (N, H, W, 3) RGB in [0, 1], any side; every activation is
    pooled to its spatial mean per channel, a (channels,) vector per tap and
    image, so a 408 px render and 224 px photos compare.
  * The objective is a channel's spatial mean at the rendered tap (the
    write-up's, lucid's and MACO's), computed on the render as saved.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Sequence

import jax
import numpy as np

from jaxviz.errors import JaxvizError
from jaxviz.optvis import models as models_lib

# Taps where the top photos are not more alike than the rest by this much have
# no reference for a similarity (Spearman correlations, in [-1, 1]).
MIN_GAP = 0.05
# A mean similarity below this: the render is processed more like unrelated
# photos than like the unit's own top photos (our threshold; the paper gives none).
OFF_PATH = 0.5
# A mean shifted objective below this share of the render's: the render is `fragile`
# (our threshold, half of the activation lost when it is moved).
FRAGILE_BELOW = 0.5
# Pixels run through the network at once: 16 photos at 224 px. VGG's first taps hold
# 13 MB per 224 px image; at 408 px batches of 16 peaked at 2.6 GB and batches of 4 at
# 1.0 GB, and ran 13% faster per image (layer 10, 2 CPU cores).
BATCH_PIXELS = 16 * 224 * 224


@functools.partial(jax.jit, static_argnames=("model", "names"))
def _pooled(model, params, images: jax.Array, names: tuple[str, ...]) -> dict:
  found = model.features(params, models_lib.preprocess(model, images), frozenset(names))
  return {name: found[name].mean(axis=(1, 2)) for name in names}


def pooled_features(model, params, images: np.ndarray, path: Sequence[str],
                    batch: int | None = None) -> dict:
  """(N, H, W, 3) in [0, 1] -> {tap: (N, channels)} spatial means, float64; `batch` images
  at a time (None: BATCH_PIXELS' worth)."""
  batch = batch or max(1, BATCH_PIXELS // (images.shape[1] * images.shape[2]))
  chunks = [_pooled(model, params, np.asarray(images[start:start + batch], np.float32),
                    tuple(path)) for start in range(0, len(images), batch)]
  pooled = {name: np.concatenate([np.asarray(chunk[name], np.float64) for chunk in chunks])
            for name in path}
  for name, value in pooled.items():
    if not np.all(np.isfinite(value)):
      raise JaxvizError(f"non-finite activations at {name}: the weights or an image are bad")
  return pooled


def ranks(rows: np.ndarray) -> np.ndarray:
  """(n, C) -> (n, C) ranks within each row from 0, ties sharing their mean rank (post-ReLU
  means tie at 0)."""
  rows = np.asarray(rows, np.float64)
  order = np.argsort(rows, axis=1, kind="stable")
  ranked = np.empty_like(rows)
  for row, (values, index) in enumerate(zip(rows, order)):
    sorted_values = values[index]
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank = np.repeat((starts + ends - 1) / 2.0, ends - starts)
    ranked[row, index] = mean_rank
  return ranked


def spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(n, C), (m, C) -> (n, m) Spearman correlations of each row of `a` with each of `b`
  (0 where a row is constant)."""
  def standardised(rows):
    ranked = ranks(rows)
    ranked -= ranked.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(ranked, axis=1, keepdims=True)
    return np.divide(ranked, norm, out=np.zeros_like(ranked), where=norm > 0)

  return standardised(a) @ standardised(b).T


@dataclasses.dataclass(frozen=True)
class TapSimilarity:
  """One tap of a render's path profile (mean Spearman correlations)."""

  tap: str
  render_top: float  # the render against each top photo
  top_top: float  # the top photos against each other
  top_rest: float  # the top photos against the other photos
  similarity: float | None  # (render_top - top_rest) / (top_top - top_rest), if it has a reference


@dataclasses.dataclass(frozen=True)
class MapTrust:
  """The trust numbers of one rendered map (see the module docstring)."""

  map: int
  objective: float
  best_photo: float
  ratio: float | None
  percentile: float
  super_stimulus: bool
  top_photos: tuple[int, ...]  # indices into the photo set, best first
  profile: tuple[TapSimilarity, ...]
  similarity: float | None
  off_path: bool
  shift_robustness: float | None
  fragile: bool

  def to_json(self) -> dict:
    return {"map": self.map, "objective": self.objective, "best_photo": self.best_photo,
            "ratio": self.ratio, "percentile": self.percentile,
            "super_stimulus": self.super_stimulus, "top_photos": list(self.top_photos),
            "similarity": self.similarity, "off_path": self.off_path,
            "shift_robustness": self.shift_robustness, "fragile": self.fragile,
            "profile": [dataclasses.asdict(tap) for tap in self.profile]}


def activation_numbers(value: float, photo_values: np.ndarray) -> tuple[float | None, float, bool]:
  """(ratio to the best photo, None if that is 0; percentile: the % of photos below, ties
  counting half; above every photo)."""
  photo_values = np.asarray(photo_values, np.float64)
  best = float(photo_values.max())
  ratio = value / best if best > 0 else None
  percentile = 100.0 * (np.sum(photo_values < value) + 0.5 * np.sum(photo_values == value)) \
      / len(photo_values)
  return ratio, float(percentile), bool(value > best)


def far_shift(side: int) -> int:
  """The longer shift of a `side`-px image: 1/32 of it (lucid's jitter moves a 224 px
  image by up to 12 px, 1/19), at least 2 px so that it differs from the 1 px one."""
  return max(2, -(-side // 32))


def shift_offsets(side: int) -> tuple[tuple[int, int], ...]:
  """The 8 (down, right) shifts in px of a `side`-px image: 1 px and `far_shift(side)` px
  along each axis, both ways."""
  return tuple(offset for step in (1, far_shift(side)) for sign in (1, -1)
               for offset in ((sign * step, 0), (0, sign * step)))


def shifted(image: np.ndarray, offsets: Sequence[tuple[int, int]]) -> np.ndarray:
  """(H, W, 3) -> (len(offsets), H, W, 3): the image moved down and right by each offset,
  the pixels moved in reflected from its border (no new edge); each shift below H, W."""
  height, width = image.shape[:2]
  pad = max(abs(value) for offset in offsets for value in offset)
  padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="reflect")
  return np.stack([padded[pad - down:pad - down + height, pad - right:pad - right + width]
                   for down, right in offsets])


def shift_numbers(objective: float, shifted_objectives: np.ndarray) -> tuple[float | None, bool]:
  """(shift robustness: the mean of `shifted_objectives` over `objective`, None unless
  that is above 0; fragile: below FRAGILE_BELOW)."""
  if not objective > 0:
    return None, False
  robustness = float(np.mean(shifted_objectives) / objective)
  return robustness, robustness < FRAGILE_BELOW


def path_profile(render: dict, photos: dict, top: np.ndarray, path: Sequence[str]
                 ) -> tuple[TapSimilarity, ...]:
  """The similarity profile over `path` of one render ({tap: (C,)}) to its `top` photos
  among `photos` ({tap: (N, C)})."""
  rest = np.setdiff1d(np.arange(len(next(iter(photos.values())))), top)
  pairs = ~np.eye(len(top), dtype=bool)
  profile = []
  for tap in path:
    top_rows = photos[tap][top]
    render_top = float(spearman(render[tap][None], top_rows).mean())
    top_top = float(spearman(top_rows, top_rows)[pairs].mean())
    top_rest = float(spearman(top_rows, photos[tap][rest]).mean())
    gap = top_top - top_rest
    similarity = (render_top - top_rest) / gap if gap >= MIN_GAP else None
    profile.append(TapSimilarity(tap, render_top, top_top, top_rest, similarity))
  return tuple(profile)


def map_trust(map_index: int, render: dict, photos: dict, path: Sequence[str], k: int,
              shifted_objectives: np.ndarray) -> MapTrust:
  """The numbers of map `map_index` (a channel of the last tap of `path`) from the pooled
  activations of its render ({tap: (C,)}) and of the photos ({tap: (N, C)}), and its
  objective on the render's `shifted` copies."""
  count = len(photos[path[-1]])
  if not 2 <= k < count:
    raise JaxvizError(f"top-k: k must be at least 2 and below the number of photos "
                      f"({count}), got {k}")
  values = photos[path[-1]][:, map_index]
  objective = float(render[path[-1]][map_index])
  ratio, percentile, above = activation_numbers(objective, values)
  top = np.argsort(-values, kind="stable")[:k]
  profile = path_profile(render, photos, top, path)
  defined = [tap.similarity for tap in profile if tap.similarity is not None]
  # A map that fewer than k photos excite has no top-k: its "top" would be filled with
  # photos it is silent on, in file order.
  excited = bool(values[top[-1]] > 0)
  similarity = float(np.mean(defined)) if defined and excited else None
  return MapTrust(map_index, objective, float(values.max()), ratio, percentile, above,
                  tuple(int(i) for i in top), profile, similarity,
                  similarity is not None and similarity < OFF_PATH,
                  *shift_numbers(objective, shifted_objectives))


def maps_trust(model, params, renders: np.ndarray, maps: Sequence[int], photo_features: dict,
               path: Sequence[str], k: int = 5) -> list[MapTrust]:
  """The numbers of `maps` (channels of `path[-1]`) from their `renders` (M, H, W, 3) in
  [0, 1] and the photos' `pooled_features` over `path`: a caller holding many renders
  passes them a chunk at a time."""
  if len(renders) != len(maps):
    raise JaxvizError(f"{len(renders)} renders for {len(maps)} maps")
  render_features = pooled_features(model, params, renders, path)
  offsets = shift_offsets(min(renders.shape[1:3]))
  found = []
  for row, map_index in enumerate(maps):
    moved = pooled_features(model, params, shifted(renders[row], offsets), path[-1:])
    found.append(map_trust(int(map_index),
                           {tap: rows[row] for tap, rows in render_features.items()},
                           photo_features, path, k, moved[path[-1]][:, map_index]))
  return found


def trust(model, params, renders: np.ndarray, maps: Sequence[int], photos: np.ndarray,
          path: Sequence[str], k: int = 5) -> list[MapTrust]:
  """Every map's numbers: `renders` (M, H, W, 3) of `maps` (channels of `path[-1]`),
  `photos` (N, h, w, 3), all in [0, 1]."""
  return maps_trust(model, params, renders, maps, pooled_features(model, params, photos, path),
                    path, k)

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


@functools.partial(jax.jit, static_argnames=("model", "names"))
def _pooled(model, params, images: jax.Array, names: tuple[str, ...]) -> dict:
  found = model.features(params, models_lib.preprocess(model, images), frozenset(names))
  return {name: found[name].mean(axis=(1, 2)) for name in names}


def pooled_features(model, params, images: np.ndarray, path: Sequence[str], batch: int = 16
                    ) -> dict:
  """(N, H, W, 3) in [0, 1] -> {tap: (N, channels)} spatial means, float64; `batch` images
  at a time (VGG's first taps at 224 px hold 13 MB per image)."""
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

  def to_json(self) -> dict:
    return {"map": self.map, "objective": self.objective, "best_photo": self.best_photo,
            "ratio": self.ratio, "percentile": self.percentile,
            "super_stimulus": self.super_stimulus, "top_photos": list(self.top_photos),
            "similarity": self.similarity, "off_path": self.off_path,
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


def map_trust(map_index: int, render: dict, photos: dict, path: Sequence[str], k: int
              ) -> MapTrust:
  """The numbers of map `map_index` (a channel of the last tap of `path`) from the pooled
  activations of its render ({tap: (C,)}) and of the photos ({tap: (N, C)})."""
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
                  similarity is not None and similarity < OFF_PATH)


def trust(model, params, renders: np.ndarray, maps: Sequence[int], photos: np.ndarray,
          path: Sequence[str], k: int = 5) -> list[MapTrust]:
  """Every map's numbers: `renders` (M, H, W, 3) of `maps` (channels of `path[-1]`),
  `photos` (N, h, w, 3), all in [0, 1]."""
  if len(renders) != len(maps):
    raise JaxvizError(f"{len(renders)} renders for {len(maps)} maps")
  photo_features = pooled_features(model, params, photos, path)
  render_features = pooled_features(model, params, renders, path)
  return [map_trust(int(map_index), {tap: rows[row] for tap, rows in render_features.items()},
                    photo_features, path, k) for row, map_index in enumerate(maps)]

"""One-call functions for notebooks: `jaxviz.render(...)`, `jaxviz.probe_photo(...)`.

They take friendly arguments (a layer name, a weights spec or `Weights`, a
seed) and return numpy arrays; the work is the same as the CLI's (`app`,
`execution`, `optvis`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Sequence

import jax
import numpy as np

from jaxviz import app, fileio, layers, vgg
from jaxviz import progress as progress_lib
from jaxviz import probe as probe_lib
from jaxviz.errors import JaxvizError
from jaxviz.optvis import models, objectives, recipes
from jaxviz.settings import RenderOptions
from jaxviz.weights import Weights


def _weights(weights: str | Weights, arch: str) -> Weights:
  return weights if isinstance(weights, Weights) else app.load_weights(weights, arch)


def as_photo(path_or_image, name: str = "photo") -> np.ndarray:
  """A photo given as a path (read as RGB in [0, 1]) or as an array: (H, W, 3) RGB in
  [0, 1] (floats) or 0..255 (uint8); (H, W) grey and (H, W, 4) RGBA become RGB as
  files do. `name` is the argument named in errors.

  Raises:
    JaxvizError: for an array of another shape, or with values that are not finite
      or outside [0, 1].
  """
  if not isinstance(path_or_image, (np.ndarray, jax.Array)):
    if not isinstance(path_or_image, (str, os.PathLike)):
      raise JaxvizError(f"{name} must be a path or an (H, W, 3) array, got "
                        f"{type(path_or_image).__name__}")
    return fileio.read_image(path_or_image)
  array = np.asarray(path_or_image)
  if array.ndim == 2:
    array = array[..., None]
  if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or 0 in array.shape:
    raise JaxvizError(f"{name} must be an (H, W, 3) RGB image, got an array of shape "
                      f"{array.shape}")
  array = np.repeat(array, 3, axis=-1) if array.shape[-1] == 1 else array[..., :3]
  if array.dtype == np.uint8:
    return array.astype(np.float32) / np.float32(255)
  if not np.issubdtype(array.dtype, np.floating):
    raise JaxvizError(f"{name} must hold floats in [0, 1] or uint8, got {array.dtype}")
  if not np.isfinite(array).all():
    raise JaxvizError(f"{name} holds non-finite values (NaN or Inf)")
  if array.min() < 0 or array.max() > 1:
    raise JaxvizError(f"{name} must hold values in [0, 1], got {array.min():.4g}.."
                      f"{array.max():.4g} (a 0..255 image should be uint8)")
  return array


def _run(recipe: recipes.Recipe, model, params, units: list[int], options: RenderOptions,
         photo, progress, params_loader=None) -> np.ndarray:
  """Every unit's images, (N, group, S, S, 3); raises if any map failed.

  `progress`: True shows a progress bar (in a terminal or a notebook), a
  callable is called with (work done, total work), False shows nothing.
  """
  options = options.check()
  with contextlib.ExitStack() as stack:
    if progress is True:
      bar = stack.enter_context(progress_lib.progress_bar())
      events = progress_lib.ProgressEvents(bar, f"rendering {progress_lib.plural(len(units), 'map')}")
    elif callable(progress):
      events = progress_lib.CallbackEvents(progress)
    else:
      events = app.RenderEvents()
    results = list(app.render_units(recipe, model, params, units, options, events, photo=photo,
                                    params_loader=params_loader))
    events.finished()
  failed = {int(m): reason for result in results
            for m, reason in zip(result.maps, map(result.failure, range(len(result.maps))))
            if reason}
  if failed:
    raise app.failures_error(failed)
  return np.concatenate([result.images for result in results])


def render(layer_or_model, *args, **kwargs) -> np.ndarray:
  """`render_layer(layer, maps, ...)` for a VGG layer (a name or an index),
  `render_model(model, params, objective, units, ...)` for any other model."""
  if isinstance(layer_or_model, (str, int, layers.Layer)):
    return render_layer(layer_or_model, *args, **kwargs)
  return render_model(layer_or_model, *args, **kwargs)


def render_layer(layer: str | int, maps: Sequence[int] | str, *,
                 weights: str | Weights = "imagenet", pre_relu: bool = False, seed: int = 0,
                 schedule=recipes.Schedule(), diversity: int = 1, batch: int | str = "auto",
                 dtype: str = "float32", precision: str = "default", driver: str = "auto",
                 init=None, arch: str = layers.DEFAULT_ARCH,
                 progress: bool | Callable[[int, int], None] = True) -> np.ndarray:
  """Renders feature maps of a VGG layer by activation maximisation (SPEC §2).

  Example:
    images = jaxviz.render("conv5_1", [271, 15], weights="imagenet")

  Args:
    layer: index (24), name ("conv5_1") or "features.24"; a conv layer is
      read after its ReLU, as the write-up's code read it (SPEC §1).
    maps: indices, or a spec string like "0:16" or "all".
    weights: "imagenet", "random[:SEED]", a file path, or loaded `Weights`.
    pre_relu: maximise a conv layer's raw output instead.
    schedule: the recipe and its settings: `Schedule` (the write-up's, SPEC §2,
      the default), `recipes.Lucid()` or `recipes.MacoRecipe(spectrum)`.
    diversity: K images per map, pushed apart by lucid's diversity term.
    batch: maps per vmapped chunk, or "auto" (`execution.auto_batch`).
    init: optional start photo (path or array) instead of the recipe's init.
    progress: True: a progress bar (terminal or notebook); a callable:
      called with (work done, total work); False: silent.
  Returns:
    (len(maps), S, S, 3) float images in [0, 1] (S = 408 at the write-up's
    defaults), or (len(maps), K, S, S, 3) with diversity K > 1.
  """
  loaded = _weights(weights, arch)
  target = vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  if not isinstance(maps, str):
    maps = ",".join(str(int(m)) for m in maps)
  options = RenderOptions(seed, schedule, batch, dtype, driver, diversity)
  photo = None if init is None else app.photo_start(init, schedule.size0, dtype)
  recipe = app.layer_recipe(target, schedule, diversity)
  params, loader = app.layer_params(loaded, target, recipe)
  images = _run(recipe, target.model, params, layers.parse_maps(maps, target.layer), options,
                photo, progress, loader)
  return images[:, 0] if diversity == 1 else images


def render_model(model, params, objective=None, units: Sequence[int] = (0,), *,
                 recipe: recipes.Recipe | None = None,
                 schedule: recipes.Schedule = recipes.Schedule(), seed: int = 0,
                 batch: int | str = "auto", dtype: str = "float32", driver: str = "auto",
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None,
                 progress: bool | Callable[[int, int], None] = True) -> np.ndarray:
  """Renders any JAX image model: a Flax module, a function or a jaxviz Model.

  Example:
    images = jaxviz.render(MyCNN(), params, jaxviz.objectives.Channel("conv2"), range(8))

  Args:
    model: a Flax module (activations read by name through
      `capture_intermediates`, or the dict it returns), a function
      `(params, images) -> {name: activation}`, or an `optvis.models` Model.
    params: its parameters (the tree `module.apply` takes under "params").
    objective: an `optvis.objectives` objective (maximised); `unit` below is
      the map index it receives (the channel, for `Channel`).
    units: the maps to render, each on its own (vmapped, independent).
    recipe: a full `optvis.recipes.Recipe` instead of `objective` and
      `schedule` (the write-up's recipe by default).
    mean, std: the input normalisation the model expects (identity by default).
  Returns:
    (len(units), S, S, 3) images in [0, 1], or (len(units), group, S, S, 3)
    for a recipe that renders groups of images.
  """
  model = models.as_model(model, mean, std)
  if recipe is None:
    if not isinstance(objective, objectives.Objective):
      raise JaxvizError("objective: jaxviz.render(model, params, objective, units) needs an "
                        "objective such as jaxviz.objectives.Channel('layer'), got "
                        f"{type(objective).__name__}")
    schedule.check()
    recipe = schedule.recipe(objective)
  elif not isinstance(recipe, recipes.Recipe):
    raise JaxvizError(f"recipe must be an optvis.recipes.Recipe, got {type(recipe).__name__}")
  images = _run(recipe, model, params, [int(u) for u in units],
                RenderOptions(seed, schedule, batch, dtype, driver), None, progress)
  return images[:, 0] if recipe.group == 1 else images


def probe_photo(photo, layer: str | int, *, weights: str | Weights = "imagenet", top: int = 15,
                maps: Sequence[int] = (), pre_relu: bool = False, precision: str = "default",
                arch: str = layers.DEFAULT_ARCH) -> probe_lib.ProbeResult:
  """The write-up's hypothesis test on one photo (a path or an (H, W, 3) array in [0, 1]).

  Example:
    result = jaxviz.probe_photo("house.jpg", "conv5_1", maps=[271])
    result.asked[271]          # (rank, mean): is map 271 in the top 15?
    result.means               # (512,) every map's mean activation (post-ReLU: >= 0)
  """
  loaded = _weights(weights, arch)
  target = vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  return probe_lib.probe(loaded, as_photo(photo), target, top=top, maps=maps)


def top_images(folder, layer: str | int, *, weights: str | Weights = "imagenet",
               batch: int = 16, pre_relu: bool = False, precision: str = "default",
               arch: str = layers.DEFAULT_ARCH) -> probe_lib.FolderScores:
  """Every map's mean on every photo of a folder, one pass; `.top_images(map, k)` ranks them.

  Example:
    scores = jaxviz.top_images("photos/", "conv5_1")
    scores.top_images(271, 9)  # [(path, mean), ...] best first
  """
  loaded = _weights(weights, arch)
  target = vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  return probe_lib.score_folder(loaded, folder, target, batch=batch)

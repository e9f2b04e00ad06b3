"""The Python API: `jaxviz.render(...)`, `jaxviz.probe_photo(...)` and a twin of every command.

Each function takes friendly arguments (a layer name, a weights spec or
`Weights`, a seed, a recipe's settings object) and calls the same application
command as the CLI (`jaxviz.app.commands`), so both faces always do the same
thing: `jaxviz.render_dir` is `jaxviz render`, `jaxviz.sweep` is `jaxviz sweep`,
and so on. `jaxviz.render` returns the images themselves, for any JAX model.

`progress`: True shows a progress bar and notes (in a terminal or a notebook),
a callable is called with (work done, total work), False shows nothing.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Callable, Sequence

import numpy as np

from jaxviz import app, layers, vgg
from jaxviz import progress as progress_lib
from jaxviz.app import commands
from jaxviz.errors import JaxvizError
from jaxviz.optvis import models, objectives
from jaxviz.optvis import recipes as recipes_lib
from jaxviz.settings import ModelSettings, RenderOptions
from jaxviz.weights import Weights

Progress = bool | Callable[[int, int], None]


class RandomWeightsWarning(UserWarning):
  """Shown (once per line of the caller's code, Python's default) when the API renders or
  ranks with random weights, as the CLI says on every run."""


def _warn_random(label: str) -> None:
  """Warns from the caller's own line: the first frame outside the jaxviz package, so
  that Python's once-per-place rule is once per line of the user's code (a fixed
  stacklevel would name a line of this module, the same for every call)."""
  package = os.path.dirname(os.path.abspath(__file__)) + os.sep
  frame, level = sys._getframe(1), 2  # stacklevel 2 is that frame
  while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
    frame, level = frame.f_back, level + 1
  warnings.warn(f"{label}: RANDOM weights, not a trained network: the results show an "
                "untrained network", RandomWeightsWarning, stacklevel=level)


def _weights(weights: str | Weights, arch: str) -> Weights:
  if not isinstance(weights, (str, Weights)):
    raise JaxvizError(f"weights: expected 'imagenet', 'random[:SEED]', a file path or "
                      f"jaxviz.Weights, got {type(weights).__name__}")
  loaded = weights if isinstance(weights, Weights) else app.load_weights(weights, arch)
  _warn_if_random(loaded)
  return loaded


def _warn_if_random(loaded: Weights) -> None:
  if loaded.is_random:
    # Python shows a warning once per place it is raised from: once per process here.
    _warn_random(loaded.label)


def _address(layer, maps):
  """(layer, maps) from `layer` and `maps`, or from a "layer:map" address as lucent writes
  them ("conv5_1:271", "mixed4a:476"), which must then be the only maps given."""
  if isinstance(layer, str) and ":" in layer:
    name, _, unit = layer.rpartition(":")
    if maps is not None:
      raise JaxvizError(f"layer {layer!r} names map {unit} already; leave maps out")
    if not unit.strip().isdigit():
      raise JaxvizError(f"cannot read {layer!r}: a 'layer:map' address ends in a map index")
    return name, [int(unit)]
  if maps is None:
    raise JaxvizError("maps: give the maps to render ([271, 15], '0:16' or 'all'), or "
                      "address one as 'layer:map' ('conv5_1:271')")
  return layer, maps


def _events(progress: Progress) -> contextlib.AbstractContextManager:
  """The events a `progress` argument asks for, as a context (a bar is stopped after)."""
  if progress is True:
    return progress_lib.ProgressEvents()
  if callable(progress):
    return contextlib.nullcontext(progress_lib.CallbackEvents(progress))
  return contextlib.nullcontext(progress_lib.Events())


def _model(weights: str | Weights, arch: str, precision: str) -> ModelSettings:
  if isinstance(weights, Weights):
    _warn_if_random(weights)
  elif isinstance(weights, str) and app.is_random_spec(weights):
    _warn_random(f"weights {weights!r}")
  return ModelSettings(weights, arch, precision).check()


def _map_spec(maps: Sequence[int] | str) -> str:
  """Maps as the CLI's --maps spec ("3,5", "0:8", "all"), which the commands parse."""
  if isinstance(maps, str):
    return maps
  try:
    return ",".join(str(int(m)) for m in maps)
  except (TypeError, ValueError):
    raise JaxvizError(f"maps: expected map indices ([271, 15]) or a spec ('0:16', 'all'), "
                      f"got {maps!r:.60}") from None


def _finish(outcome):
  """Raises the error a partly failed render ends with (the other maps are written)."""
  error = outcome.error()
  if error is not None:
    raise error
  return outcome


def _run(recipe: recipes_lib.Recipe, model, params, units: list[int], options: RenderOptions,
         photo, progress, params_loader=None) -> np.ndarray:
  """Every unit's images, (N, group, S, S, 3); raises if any map failed."""
  options = options.check()
  with _events(progress) as events:
    events.begin(f"rendering {progress_lib.plural(len(units), 'map')}")
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
  """`render_layer(layer, maps, ...)` for a layer of a built-in network (a name or an
  index: VGG's layers, the canonical networks' taps), `render_model(model, params,
  objective, units, ...)` for any other model."""
  if isinstance(layer_or_model, (str, int, layers.Layer)):
    return render_layer(layer_or_model, *args, **kwargs)
  return render_model(layer_or_model, *args, **kwargs)


def render_layer(layer: str | int, maps: Sequence[int] | str | None = None, *,
                 weights: str | Weights = "imagenet", pre_relu: bool = False, seed: int = 0,
                 schedule=recipes_lib.Schedule(), diversity: int = 1, batch: int | str = "auto",
                 dtype: str = "float32", precision: str = "default", driver: str = "auto",
                 init=None, arch: str = layers.DEFAULT_ARCH, objective=None,
                 progress: bool | Callable[[int, int], None] = True) -> np.ndarray:
  """Renders feature maps of a built-in network's layer by activation maximisation
  (SPEC §2).

  Example:
    images = jaxviz.render("conv5_1", [271, 15], weights="imagenet")
    images = jaxviz.render("mixed4a", [476], arch="inceptionv1", weights="random")
    from jaxviz import objectives           # other objectives (README: Python)
    centre = jaxviz.render("conv5_1", [271], objective=objectives.Neuron("conv5_1"))

  Args:
    layer: VGG: index (24), name ("conv5_1") or "features.24"; a conv layer is
      read after its ReLU, as the write-up's code read it (SPEC §1). Other
      archs: the reference's tap name ("mixed4a", "layer3.2") or its index in
      `jaxviz layers --arch ARCH`.
    maps: indices, or a spec string like "0:16" or "all".
    weights: "imagenet", "random[:SEED]", a file path, or loaded `Weights`.
    pre_relu: maximise a VGG conv layer's raw output instead (the other archs
      name their pre-ReLU outputs as taps).
    schedule: the recipe and its settings: `Schedule` (the write-up's, SPEC §2,
      the default), `recipes.Lucid()` or `recipes.MacoRecipe(spectrum)`.
    diversity: K images per map, pushed apart by lucid's diversity term.
    batch: maps per vmapped chunk, or "auto" (`execution.auto_batch`).
    init: optional start photo (path or array) instead of the recipe's init.
    arch: the network "imagenet" and "random" weights are of (`jaxviz.nets.ARCHS`:
      vgg11..vgg19, inceptionv1, googlenet, resnet50); a file records its own.
    objective: maximise this `jaxviz.objectives` objective instead of the
      channel's mean; each map index is the `unit` it receives. Names read as
      everywhere else: on VGG "conv5_1" is read after its ReLU and
      "conv5_1_pre_relu" is the raw conv output.
    progress: True: a progress bar (terminal or notebook); a callable:
      called with (work done, total work); False: silent.
  Returns:
    (len(maps), S, S, 3) float images in [0, 1] (S = 408 at the write-up's
    defaults), or (len(maps), K, S, S, 3) with diversity K > 1.
  """
  layer, maps = _address(layer, maps)
  loaded = _weights(weights, arch)
  target = vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  maps = _map_spec(maps)
  options = RenderOptions(seed, schedule, batch, dtype, driver, diversity)
  photo = None if init is None else app.photo_start(init, schedule.size0, dtype)
  recipe = app.layer_recipe(target, schedule, diversity, objective)
  params, loader = app.layer_params(loaded, target, recipe)
  images = _run(recipe, target.model, params, layers.parse_maps(maps, target.layer), options,
                photo, progress, loader)
  return images[:, 0] if diversity == 1 else images


def render_model(model, params, objective=None, units: Sequence[int] = (0,), *,
                 recipe: recipes_lib.Recipe | None = None,
                 schedule: recipes_lib.Schedule = recipes_lib.Schedule(), seed: int = 0,
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
    params: its parameters (the tree `module.apply` takes under "params"), or
      loaded `jaxviz.Weights` (their tree).
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
  if isinstance(params, Weights):  # loaded weights stand for their parameter tree
    _warn_if_random(params)
    params = params.params
  if not isinstance(params, Mapping):
    raise JaxvizError(f"params: expected the parameter tree (the dict `module.apply` takes "
                      f"under 'params') or jaxviz.Weights, got {type(params).__name__}")
  if recipe is None:
    if not isinstance(objective, objectives.Objective):
      raise JaxvizError("objective: jaxviz.render(model, params, objective, units) needs an "
                        "objective such as jaxviz.objectives.Channel('layer'), got "
                        f"{type(objective).__name__}")
    schedule.check()
    recipe = schedule.recipe(objective)
  elif not isinstance(recipe, recipes_lib.Recipe):
    raise JaxvizError(f"recipe must be an optvis.recipes.Recipe, got {type(recipe).__name__}")
  images = _run(recipe, model, params, [int(u) for u in units],
                RenderOptions(seed, schedule, batch, dtype, driver), None, progress)
  return images[:, 0] if recipe.group == 1 else images


def _options(seed, schedule, batch, dtype, driver, diversity, trace,
             preview: bool) -> RenderOptions:
  """The render options, as the CLI's flags make them: `preview` is `--preview` (the
  schedule's quick version, recorded as such)."""
  if preview:
    schedule = schedule.preview()
  return RenderOptions(seed, schedule, batch, dtype, driver, diversity, trace=trace,
                       preview=preview).check()


def render_dir(out, layer: str | int, maps: Sequence[int] | str | None = None, *,
               weights: str | Weights = "imagenet", arch: str = layers.DEFAULT_ARCH,
               precision: str = "default", pre_relu: bool = False, init=None,
               force: bool = False, seed: int = 0, schedule=recipes_lib.Schedule(),
               batch: int | str = "auto", dtype: str = "float32", driver: str = "auto",
               diversity: int = 1, trace: bool = False, preview: bool = False,
               photos=None, k: int | None = None, progress: Progress = True) -> app.RenderOutcome:
  """`jaxviz render`: renders maps of a layer into the directory `out` (a PNG per
  map, grid.png, render.json), resuming what is finished there. `layer` may be a
  "layer:map" address ("conv5_1:271") instead of a layer and `maps`. With `photos`
  (a folder), then adds the trust numbers (`trust_dir`; the outcome's `trust`).

  Example:
    outcome = jaxviz.render_dir("renders", "conv5_1", [271, 15], weights="random")
    outcome.record["files"]      # {"271": "24_271.png", ...}
  Raises JaxvizError after writing the others if any map failed.
  """
  layer, maps = _address(layer, maps)
  maps = _map_spec(maps)
  with _events(progress) as events:
    outcome = commands.render(layer, maps, out, _model(weights, arch, precision),
                              _options(seed, schedule, batch, dtype, driver, diversity, trace,
                                       preview),
                              pre_relu=pre_relu, init=init, force=force, photos=photos, k=k,
                              events=events)
  return _finish(outcome)


def sweep(out, layer: str | int, maps: Sequence[int] | str | None = None, *,
          weights: str | Weights = "imagenet", arch: str = layers.DEFAULT_ARCH,
          precision: str = "default", pre_relu: bool = False, top_images=None,
          process_index: int | None = None, process_count: int = 1, force: bool = False,
          seed: int = 0, schedule=recipes_lib.Schedule(), batch: int | str = "auto",
          dtype: str = "float32", driver: str = "auto", diversity: int = 1,
          trace: bool = False, preview: bool = False, photos=None, k: int | None = None,
          progress: Progress = True) -> commands.SweepOutcome:
  """`jaxviz sweep`: every map of a layer (or `maps`) into `out`, then its atlas
  (`out/index.html`; `top_images` a `top-images --all-maps` table; with `photos`, the
  trust numbers first)."""
  layer, maps = _address(layer, "all" if maps is None and ":" not in str(layer) else maps)
  maps = _map_spec(maps)
  with _events(progress) as events:
    outcome = commands.sweep(layer, out, _model(weights, arch, precision),
                             _options(seed, schedule, batch, dtype, driver, diversity, trace,
                                      preview),
                             maps=maps, pre_relu=pre_relu, top_images=top_images,
                             process_index=process_index, process_count=process_count,
                             force=force, photos=photos, k=k, events=events)
  return _finish(outcome)


def trust_dir(out, photos, *, weights: str | Weights = "imagenet", k: int | None = None,
              precision: str = "default", progress: Progress = True) -> commands.TrustOutcome:
  """`jaxviz trust`: each finished render of the render directory `out` set beside
  the photos of folder `photos` (README: "Can I trust this render?"); written into its
  render.json. `weights` must be those it was rendered with.

  Example:
    found = jaxviz.trust_dir("renders", "photos/", weights="random")
    [(m.map, m.ratio, m.similarity, m.off_path) for m in found.maps]
  """
  with _events(progress) as events:
    return commands.trust(out, photos, _model(weights, layers.DEFAULT_ARCH, precision), k=k,
                          events=events)


def probe_photo(photo, layer: str | int, *, weights: str | Weights = "imagenet", top: int = 15,
                maps: Sequence[int] = (), pre_relu: bool = False, precision: str = "default",
                arch: str = layers.DEFAULT_ARCH, figure=None, renders="renders",
                with_renders: bool = True, seed: int = 0, schedule=recipes_lib.Schedule(),
                batch: int | str = "auto", dtype: str = "float32", driver: str = "auto",
                diversity: int = 1, trace: bool = False, preview: bool = False,
                progress: Progress = False) -> commands.ProbeOutcome:
  """`jaxviz probe`: the write-up's hypothesis test on one photo (a path or an
  (H, W, 3) array in [0, 1]); with `figure`, the write-up's figure, its renders
  read from the render directory `renders` and rendered into it where missing
  (`with_renders=False`: the top row only).

  Example:
    result = jaxviz.probe_photo("house.jpg", "conv5_1", maps=[271])
    result.asked[271]          # (rank, mean): is map 271 in the top 15?
    result.means               # (512,) every map's mean activation (post-ReLU: >= 0)
  """
  if ":" in str(layer):  # "conv5_1:271": rank that map
    layer, maps = _address(layer, list(maps) or None)
  # Checked before the ranking, as the command checks its flags before any work.
  options = _options(seed, schedule, batch, dtype, driver, diversity, trace, preview)
  with _events(progress) as events:
    outcome = commands.probe(photo, layer, _model(weights, arch, precision), top=top,
                             maps=maps, pre_relu=pre_relu, figure=figure, events=events)
    if figure is not None:
      outcome = commands.probe_figure(outcome, figure, options, renders=renders,
                                      with_renders=with_renders, events=events)
  return _finish(outcome)


def top_images(folder, layer: str | int, *, map: int | None = None, all_maps: bool = False,
               top: int = 9, out=None, weights: str | Weights = "imagenet", batch: int = 16,
               pre_relu: bool = False, precision: str = "default",
               arch: str = layers.DEFAULT_ARCH,
               progress: Progress = False) -> commands.TopImagesOutcome:
  """`jaxviz top-images`: every map's mean on every photo of a folder, in one pass;
  `.top_images(map, k)` ranks them. With `map` (and `out`, a grid of its top photos)
  or `all_maps` (and `out`, the JSON table the atlas reads), as the command does;
  with neither, just the scores.

  Example:
    scores = jaxviz.top_images("photos/", "conv5_1")
    scores.top_images(271, 9)  # [(path, mean), ...] best first
  """
  if ":" in str(layer):  # "conv5_1:271": that map
    layer, (map,) = _address(layer, None if map is None else [map])
  if map is None and not all_maps:
    all_maps = True  # every map scored; nothing written unless `out`
  with _events(progress) as events:
    return commands.top_images(folder, layer, _model(weights, arch, precision), map=map,
                               all_maps=all_maps, top=top, pre_relu=pre_relu, batch=batch,
                               out=out, events=events)


def compare(layer: str | int, maps: Sequence[int] | str | None = None,
            recipes: Sequence[str] = ("seed", "lucid", "maco"), *, out="compare.png",
            weights: str | Weights = "imagenet", arch: str = layers.DEFAULT_ARCH,
            precision: str = "default", pre_relu: bool = False, seed: int = 0,
            batch: int | str = "auto", dtype: str = "float32", diversity: int = 1,
            preview: bool = False, progress: Progress = True,
            **recipe_settings) -> commands.CompareOutcome:
  """`jaxviz compare`: the same maps under several recipes, one row per map and one
  column per recipe in the figure `out` (None: no figure). `recipe_settings` are the
  CLI's recipe options in the library's words (`size0=96, steps=64, spectrum="s.npy"`),
  applied to every recipe that has them."""
  from jaxviz.settings import RecipeOptions

  layer, maps = _address(layer, maps)
  maps = _map_spec(maps)
  try:
    given = RecipeOptions(preview=preview, **recipe_settings)
  except TypeError as error:
    raise JaxvizError(f"compare: {error}") from None
  options = RenderOptions(seed, batch=batch, dtype=dtype, diversity=diversity,
                          preview=preview).check()
  with _events(progress) as events:
    return commands.compare(layer, maps, recipes, _model(weights, arch, precision), given,
                            options, pre_relu=pre_relu, out=out, events=events)


def classify_photo(photo, top: int = 5, *, weights: str | Weights = "imagenet",
                   arch: str = layers.DEFAULT_ARCH, precision: str = "default",
                   progress: Progress = False) -> commands.ClassifyOutcome:
  """`jaxviz classify`: ImageNet's top classes for a photo (a path or an array)."""
  with _events(progress) as events:
    return commands.classify(photo, _model(weights, arch, precision), top, events=events)


def spectrum(folder, out=None, size: int = 1280,
             progress: Progress = False) -> commands.SpectrumOutcome:
  """`jaxviz spectrum`: MACO's magnitude spectrum of a folder's photos (`.magnitude`,
  written as `.npy` to `out` if given)."""
  with _events(progress) as events:
    return commands.spectrum(folder, out, size, events=events)


# The other commands' twins take plain arguments already (named apart from jaxviz's
# modules of the same name: jaxviz.layers, jaxviz.atlas).
layers_table = commands.layers    # `jaxviz layers`
convert_weights = commands.convert  # `jaxviz convert`
png_info = commands.info          # `jaxviz info`
build_atlas = commands.atlas      # `jaxviz atlas`

"""Rendering a VGG layer's maps as the commands do: weights, recipes, render directories.

`jaxviz.app.commands` builds every command on these; `jaxviz.api` and the CLI
call the commands.
"""

from __future__ import annotations

import dataclasses
import importlib
import threading
import time
from pathlib import Path
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxviz import execution, fileio, nets, ops, store, vgg
from jaxviz import layers as layers_lib
from jaxviz import weights as weights_lib
from jaxviz.errors import JaxvizError, SettingError
from jaxviz.optvis import objectives, recipes
from jaxviz.optvis.render import dtype_context, resolve_driver
from jaxviz.progress import Events, Workload, plural
from jaxviz.reprs import ShortRepr
from jaxviz.settings import DIVERSITY_WEIGHT, RenderOptions, prng_key

# Weights: `--weights imagenet|random[:SEED]|PATH`.

def _converter():
  """`jaxviz_convert.torch_weights` (no torch), imported only when a file is converted."""
  import jaxviz_convert.torch_weights as torch_weights

  return torch_weights


def is_random_spec(spec: str) -> bool:
  """Whether a `--weights` value asks for random weights (`random` or `random:SEED`)."""
  spec = spec.strip()
  return spec == "random" or spec.startswith("random:")


def load_weights(spec: str = "imagenet", arch: str = layers_lib.DEFAULT_ARCH,
                 say=None) -> weights_lib.Weights:
  """A `--weights` value as Weights (their tensors are read when needed).

  * `imagenet` (default): the converted file in the user cache
    (`<cache>/<arch>-imagenet.safetensors`). If it is absent, the published
    `.pth` is taken from torch's hub cache or downloaded there (with a progress
    bar), checked against the hash in its name, and converted once.
  * `random` or `random:SEED`: torchvision's initialisation from a seeded key;
    every output that uses it says so.
  * a path: a `.safetensors` written by the converter, or a torchvision `.pth`
    state dict, converted once into the user cache (`<cache>/converted/<its
    sha256>.safetensors`); later commands read the converted file.

  `say(line)`, if given, is told when a file is converted.
  """
  nets.check_arch(arch)
  spec = spec.strip()
  if is_random_spec(spec):
    seed_text = spec.partition(":")[2] or "0"
    if not seed_text.isdigit():
      raise JaxvizError(f"--weights random:SEED needs an integer seed, got {seed_text!r}")
    return weights_lib.random_weights(int(seed_text), arch)
  if spec == "imagenet":
    cached = weights_lib.imagenet_cache_path(arch)
    if not cached.is_file():
      _converter().download_and_convert(arch, cached)
    return weights_lib.load_safetensors(cached, label="imagenet")
  path = Path(spec).expanduser()
  if path.suffix in (".pth", ".pt"):
    return _converted_pth(path, say)
  if path.suffix == ".safetensors" or path.exists():
    return weights_lib.load_safetensors(path)
  raise JaxvizError(f"--weights {spec!r} is not 'imagenet', 'random[:SEED]' or an existing "
                    ".safetensors/.pth file")


def _converted_pth(path: Path, say=None) -> weights_lib.Weights:
  """A `.pth` through its converted copy in the user cache, named by the `.pth`'s
  sha256 (so a render's identity is the `.pth`'s, whichever copy was read)."""
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {fileio.display(path)}")
  digest = weights_lib.file_digest(path)
  cached = weights_lib.converted_path(digest)
  if not cached.is_file():
    if say:
      say(f"converting {fileio.display(path)} once; later commands read "
          f"{fileio.display(cached)}")
    _converter().convert_file(path, cached, source_sha256=digest)
  return weights_lib.load_safetensors(cached, label=fileio.display(path), sha256=digest)


# Renders of a VGG layer (SPEC §2).

def photo_start(path_or_image, size0: int, dtype: str = "float32") -> np.ndarray:
  """`--init`: a photo as the (size0, size0, 3) start image of a render in `dtype`.

  The photo's 8-bit values are divided by 255 in `dtype` (`fileio.read_image`)
  and resized with the OpenCV-style bicubic in `dtype`: in float64 nothing
  passes through float32. An array given instead of a path is cast to `dtype`.
  """
  photo = (np.asarray(path_or_image, dtype) if isinstance(path_or_image, np.ndarray)
           else fileio.read_image(path_or_image, dtype))
  with dtype_context(dtype):
    return np.asarray(ops.resize_bicubic(jax.numpy.asarray(photo), size0, size0))


def layer_recipe(target: vgg.Target, schedule=recipes.Schedule(), diversity: int = 1,
                 objective: objectives.Objective | None = None) -> recipes.Recipe:
  """The recipe for the maps of `target`: `schedule` is the write-up's `Schedule` (SPEC
  §2), `Lucid` or `MacoRecipe`, checked against the layer. The objective is the
  channel's mean (read as SPEC §1 says) unless `objective` is given (any objective,
  its names read as `target.model` reads them, its `unit` the map); with `diversity`
  K > 1, K images per map are rendered together and `DIVERSITY_WEIGHT` times lucid's
  diversity is added."""
  schedule.check(target.layer.min_input_side, target.describe())
  if objective is None:
    objective = objectives.Channel(target.feature_name)
  elif not isinstance(objective, objectives.Objective):
    raise JaxvizError(f"objective: expected a jaxviz.objectives objective (Channel, Neuron, "
                      f"Direction, or a sum of them), got {type(objective).__name__}")
  if diversity > 1:
    objective = objective + DIVERSITY_WEIGHT * objectives.Diversity(target.feature_name)
  recipe = schedule.recipe(objective, group=diversity)
  if recipe.param.space == "input" and nets.normalisation(target.arch) != (
      nets.IMAGENET_MEAN, nets.IMAGENET_STD):
    # The write-up's steps and MACO's range in ImageNet's units on every network.
    recipe = dataclasses.replace(
        recipe, param=dataclasses.replace(recipe.param, imagenet_units=True))
  return recipe


def import_meanwhile(module: str) -> None:
  """Imports `module` in a background thread: matplotlib takes most of a second to
  import, which costs nothing while the rendering runs in other processes (a later
  import of it waits for this one)."""
  threading.Thread(target=importlib.import_module, args=(module,), daemon=True).start()


def layer_params(loaded: weights_lib.Weights, target: vgg.Target, recipe: recipes.Recipe):
  """(the parameters `recipe` needs of `loaded`, a picklable loader of the same)."""
  modules = target.model.modules(recipe.objective.layers())
  return loaded.subset(modules), loaded.loader(modules)


def map_image(images: np.ndarray) -> np.ndarray:
  """One map's rendered group (N, S, S, 3) as one image: side by side when N > 1."""
  return np.concatenate(list(images), axis=1)


def device_description() -> str:
  """This process's devices (in a multi-process run jax.devices() lists every process's)."""
  device = jax.local_devices()[0]
  return f"{device.platform}: {device.device_kind} x{jax.local_device_count()}"


def render_identity(loaded: weights_lib.Weights, target: vgg.Target, recipe: recipes.Recipe,
                    options: RenderOptions, init_path=None) -> dict:
  """Everything that decides what a map's render looks like (not batch or driver)."""
  return {
      "layer": target.layer.index, "pre_relu": target.pre_relu, "arch": target.arch,
      "seed": options.seed, "schedule": options.schedule.spec(), "recipe": recipe.spec(),
      "diversity": options.diversity, "preview": options.preview, "dtype": options.dtype, "precision": target.precision,
      "init": None if init_path is None else {"path": str(init_path),
                                              "sha256": fileio.sha256_file(init_path)},
      "weights": render_identity_weights(loaded),
  }


def render_identity_weights(loaded: weights_lib.Weights) -> dict:
  """How a render's identity names its weights."""
  return {"label": loaded.label, "sha256": loaded.sha256, "random": loaded.is_random}


@dataclasses.dataclass(frozen=True)
class RenderPlan:
  """The work a render directory has left, known before it starts.

  Work is counted in steps times the model's input pixels (`execution.step_work`),
  so that every scale weighs what it costs.

  Attributes:
    skipped: maps already finished.
    todo: maps to render.
    batch: maps per batch.
    workload: every batch's steps and their work (padding included).
    largest_side: the largest image side.
    preview: the same maps' workload with `--preview` settings, if asked.
    out: the render directory, if any.
  """

  skipped: int
  todo: int
  batch: int
  workload: Workload
  largest_side: int
  preview: Workload | None = None
  out: str | None = None

  @property
  def work(self) -> int:
    """The work of every batch to render."""
    return self.workload.work

  @property
  def steps(self) -> int:
    """Optimisation steps per map."""
    return sum(self.workload.steps)


# What rendering reports as it goes (the CLI prints it, `progress.ProgressEvents`).
RenderEvents = Events


def _workload(recipe: recipes.Recipe, model, maps: int, batch: int) -> Workload:
  """The steps of `maps` maps in batches of `batch` (the last padded)."""
  return Workload(tuple(recipe.steps),
                  tuple(work * batch for work in execution.step_work(recipe, model)),
                  -(-maps // batch) if maps else 0)


def render_units(recipe: recipes.Recipe, model, params, units: Sequence[int],
                 options: RenderOptions, events: RenderEvents = RenderEvents(), *,
                 photo: np.ndarray | None = None, skipped: int = 0,
                 preview: recipes.Recipe | None = None, run: dict | None = None,
                 params_loader=None, out=None):
  """Renders `units` where `execution` decides; yields each finished batch.

  Tells `events` the plan (`skipped` maps already done; the `preview` recipe's
  workload for comparison) and the steps as they are done. `run`, if given,
  receives the batch and worker count (for the record). `params_loader` lets
  worker processes read the parameters themselves (`execution.iter_render`).
  """
  units = list(units)
  execution.check_model(recipe, model, params, units)
  mesh, workers = execution.local_execution()
  batch = (execution.auto_batch(recipe, model, params, options.dtype)
           if options.batch == "auto" else options.batch)
  run_batch = execution.effective_batch(batch, len(units), mesh, workers) if units else batch
  workload = _workload(recipe, model, len(units), run_batch)
  events.plan(RenderPlan(
      skipped, len(units), run_batch, workload, max(recipe.sides),
      _workload(preview, model, len(units), run_batch) if preview is not None else None,
      None if out is None else fileio.display(out)))
  if run is not None:
    run.update(batch=batch, workers=workers)
  if not units:
    return

  def on_steps(batch_number: int, count: int, scale: int) -> None:
    events.steps(batch_number, scale, count, count * workload.step_work[scale])

  yield from execution.iter_render(
      recipe, model, params, units, prng_key(options.seed), batch=batch, mesh=mesh,
      workers=workers, dtype=options.dtype, driver=options.driver, photo=photo,
      on_start=events.side_by_side, on_steps=on_steps, on_out_of_memory=events.out_of_memory,
      params_loader=params_loader)


@dataclasses.dataclass(frozen=True, repr=False)
class RenderOutcome(ShortRepr):
  """What one `render_to_dir` call did.

  Attributes:
    record: the directory's render record (this process's) after the call.
    rendered: maps rendered and written by this call.
    skipped: maps already finished before the call.
    failed: {map: reason} for maps whose render failed in this call.
    wall_time_s: this call's rendering time.
    out: the render directory.
    weights: the weights rendered with.
    trust: with --photos, the trust numbers added after (`commands.TrustOutcome`).
  """

  record: dict
  rendered: list[int]
  skipped: int
  failed: dict[int, str]
  wall_time_s: float
  out: Path
  weights: weights_lib.Weights
  trust: object = None

  def to_json(self) -> dict:
    """The record (`--json`; with --photos, as it is after the trust numbers)."""
    return self.record

  def error(self) -> JaxvizError | None:
    """The one error to end with if any map failed (the others are finished), else None."""
    return failures_error(self.failed, self.out) if self.failed else None


def render_to_dir(loaded: weights_lib.Weights, target: vgg.Target, maps: Sequence[int], out_dir,
                  options: RenderOptions, *, init_path=None, force: bool = False,
                  process_index: int = 0, process_count: int = 1,
                  events: RenderEvents = RenderEvents()) -> RenderOutcome:
  """Renders `maps` of `target` into `out_dir` (`store`): a PNG per map, grid.png, record.

  Rerunning with the same settings resumes (finished maps are skipped); other
  settings are refused unless `force`. Process K of N takes maps[K::N] and
  keeps its own record. Dead maps are rendered as the write-up's code renders
  them and reported (`RenderEvents.dead`, `dead_at_start`); a map whose
  objective or image stops being finite is not written but recorded under
  `failed` and returned, and the others finish. With nothing left to render,
  nothing is written, so finished renders can be read from a read-only folder.
  """
  options = options.check()
  recipe = layer_recipe(target, options.schedule, options.diversity)
  directory = store.RenderDirectory(
      out_dir, render_identity(loaded, target, recipe, options, init_path),
      {"layer_name": target.layer.name, "reads": target.read.name,
       "sides": list(recipe.sides)},
      force=force, process_index=process_index, process_count=process_count)
  maps = list(maps)[process_index::process_count]
  preview = _preview_recipe(target, options)
  if all(m in directory.finished() for m in maps):
    list(render_units(recipe, target.model, layer_params(loaded, target, recipe)[0], [],
                      options, events, skipped=len(maps), preview=preview,
                      out=out_dir))  # tells `events` the plan
    events.finished()
    return RenderOutcome(directory.record, [], len(maps), {}, 0.0, Path(out_dir), loaded)
  fileio.ensure_writable_dir(out_dir)
  with directory.lock():
    return _render_into(directory, loaded, target, recipe, preview, maps, options, events,
                        init_path)


def _preview_recipe(target: vgg.Target, options: RenderOptions) -> recipes.Recipe | None:
  """The `--preview` recipe, whose work the plan reports; None where the preview's sizes
  do not suit the tap (InceptionV1's logits need an input of 224 px)."""
  try:
    return layer_recipe(target, options.schedule.preview(), options.diversity)
  except SettingError:
    return None


def _render_into(directory: store.RenderDirectory, loaded, target, recipe, preview, maps,
                 options, events, init_path) -> RenderOutcome:
  """`render_to_dir`'s work, under the directory's lock."""
  done = directory.finished()
  for map_index, filename in directory.damaged().items():
    if map_index in maps:
      events.damaged(map_index, filename)
  todo = [m for m in maps if m not in done]
  run = {"maps": todo, "driver": resolve_driver(options.driver),
         "jax_version": jax.__version__, "device": device_description(), "wall_time_s": 0.0}
  params, loader = layer_params(loaded, target, recipe)
  results = render_units(recipe, target.model, params, todo, options, events,
                         photo=None if init_path is None else photo_start(
                             init_path, options.schedule.size0, options.dtype),
                         skipped=len(maps) - len(todo), preview=preview, run=run,
                         params_loader=loader, out=directory.out_dir)
  directory.record["runs"].append(run)
  import_meanwhile("jaxviz.figures")  # for grid.png, while the parent waits on workers
  provenance = {**target.provenance(), "recipe": recipe.name,
                "settings_hash": directory.digest, **loaded.provenance(), "seed": options.seed,
                "dtype": options.dtype}
  random_note = ", RANDOM weights" if loaded.is_random else ""
  began = time.perf_counter()
  failed: dict[int, str] = {}
  for result in results:
    for row, map_index in enumerate(int(m) for m in result.maps):
      reason = result.failure(row)
      if reason:
        failed[map_index] = reason
        directory.fail(map_index, reason)
        events.failed(map_index, reason)
        continue
      objective = result.objectives[row]
      alive = [scale for scale, value in enumerate(objective) if value != 0]
      first_alive = alive[0] if alive else None
      directory.add(map_index, store.map_filename(target.layer.index, map_index),
                    map_image(result.images[row]), objective, first_alive,
                    bool(result.dead_at_start[row]),
                    fileio.png_text(f"{target.describe()} map {map_index}, recipe "
                                    f"{recipe.name}{random_note}",
                                    {**provenance, "map": map_index}),
                    trace=result.trace[row] if options.trace else None)
      if result.dead_at_start[row]:
        events.dead(map_index, first_alive)
    run["wall_time_s"] = round(time.perf_counter() - began, 3)
    directory.save()
  directory.save()
  title = f"{target.describe()}, recipe {recipe.name}, weights: {loaded.label}"
  directory.write_grid(title, maps, fileio.png_text(title, provenance))
  events.finished()
  rendered = [m for m in todo if m not in failed]
  return RenderOutcome(directory.record, rendered, len(maps) - len(todo), failed,
                       run["wall_time_s"], directory.out_dir, loaded)


def failures_error(failed: dict[int, str], out_dir=None) -> JaxvizError:
  """The one error a render with failed maps ends with, after the others are finished."""
  map_index, reason = next(iter(failed.items()))
  where = (f"; no image was written for it, the others are in {out_dir} and its render "
           "record lists the failures" if out_dir is not None else "")
  return JaxvizError(f"{plural(len(failed), 'map')} failed (map "
                     f"{map_index}: {reason}){where}")


# Recipes side by side, and MACO's spectrum.

def render_maps(loaded: weights_lib.Weights, target: vgg.Target, maps: Sequence[int],
                options: RenderOptions, events: RenderEvents = RenderEvents()):
  """Renders `maps` in memory -> (images {map: (S, S * group, 3)}, final objective
  {map: value}); raises if any map failed."""
  options = options.check()
  recipe = layer_recipe(target, options.schedule, options.diversity)
  images, finals, failed = {}, {}, {}
  params, loader = layer_params(loaded, target, recipe)
  for result in render_units(recipe, target.model, params, maps, options, events,
                             params_loader=loader):
    for row, map_index in enumerate(int(m) for m in result.maps):
      reason = result.failure(row)
      if reason:
        failed[map_index] = reason
        continue
      images[map_index] = map_image(result.images[row])
      finals[map_index] = float(result.objectives[row, -1])
  events.finished()
  if failed:
    raise failures_error(failed)
  return images, finals


def photo_spectrum(paths: Sequence[Path], size: int,
                   on_skip=None) -> tuple[np.ndarray, int]:
  """MACO's magnitude: the mean over photos of |rfft2| of each colour plane after
  decorrelation (`params.decorrelate`), each photo resized to size x size.
  Returns ((3, size, size // 2 + 1) float32, photos used); unreadable files are
  skipped (`on_skip(path, reason)`)."""
  from jaxviz.optvis import params as params_lib

  if size < 2 or size % 2 or size > recipes.MAX_SIDE:
    raise JaxvizError(f"--size must be even, in 2..{recipes.MAX_SIDE}, got {size}")

  @jax.jit
  def magnitude(photo):
    planes = jnp.moveaxis(params_lib.decorrelate(ops.resize_bicubic(photo, size, size)), -1, 0)
    return jnp.abs(jnp.fft.rfft2(planes))

  total, used = np.zeros((3, size, size // 2 + 1)), 0
  for path in paths:
    try:
      photo = fileio.read_image(path)
    except JaxvizError as error:
      if on_skip:
        on_skip(path, str(error))
      continue
    total += np.asarray(magnitude(jnp.asarray(photo)), np.float64)
    used += 1
  if not used:
    raise JaxvizError("none of the photos could be read")
  return (total / used).astype(np.float32), used

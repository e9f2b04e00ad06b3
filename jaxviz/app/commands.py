"""Every command's work, once: the CLI and the Python API (`jaxviz.api`) both call these.

Conventions:
  * A command takes validated settings objects for the option groups it shares
    (`settings.ModelSettings`, `settings.RenderOptions`) and plain values, in
    the library's words, for its own; it checks what it is given before any
    long work (a `SettingError` names the setting; the CLI shows it as a flag).
  * It reports what happens through `events` (`progress.Events`: notes, a piece
    of work per bar) and returns an outcome: what it found and the files it
    wrote, with `to_json()` for `--json`. Printing is the caller's business.
  * A render whose maps partly failed returns its outcome (the others are
    finished and written); `outcome.error()` is the error to end with.
  * Device set-up (`--distributed`) and the compilation cache are decided here,
    not by the caller.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from jaxviz import atlas as atlas_lib
from jaxviz import execution, fileio, nets, ops, store, vgg, xla_cache
from jaxviz import layers as layers_lib
from jaxviz import probe as probe_lib
from jaxviz import weights as weights_lib
from jaxviz.app import rendering
from jaxviz.app.no_model import InfoOutcome, LayersOutcome, atlas, info, layers  # noqa: F401
from jaxviz.app.no_model import positive as _positive
from jaxviz.classify import INPUT_SIDE
from jaxviz.errors import JaxvizError, SettingError
from jaxviz.nets import networks
from jaxviz.progress import Events, plural
from jaxviz.reprs import ShortRepr
from jaxviz.settings import ModelSettings, RecipeOptions, RenderOptions, parse_recipes

# Each map's top photos that `trust` compares its render with, unless told otherwise.
TOP_PHOTOS = 5
# Images `trust` holds at once: 64 renders at 408 px are 128 MB in float32.
TRUST_CHUNK = 64

# Shared steps.

def use_compilation_cache(events: Events) -> None:
  """The persistent XLA cache in the user cache dir, so a second run skips compiling;
  one warning line if it cannot be used."""
  problem = xla_cache.use(weights_lib.cache_dir() / "xla")
  if problem:
    events.note(f"warning: {problem}")


def load(model: ModelSettings, events: Events) -> weights_lib.Weights:
  """The weights `model` names, said in a note."""
  model.check()
  if isinstance(model.weights, weights_lib.Weights):  # already loaded (the Python API)
    loaded = model.weights
  else:
    loaded = rendering.load_weights(model.weights, model.arch, say=events.note)
  events.note(f"weights: {loaded.describe()}")
  return loaded


def load_target(model: ModelSettings, layer, pre_relu: bool, events: Events):
  """(weights, target): the weights, then the layer resolved once, against the
  architecture they hold (VGG19's conv5_1 is index 28)."""
  use_compilation_cache(events)
  loaded = load(model, events)
  return loaded, vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu,
                                    precision=model.precision)


def weights_title(loaded: weights_lib.Weights) -> str:
  """'weights: LABEL', marked when random, for figure titles."""
  return f"weights: {loaded.label}" + (" (RANDOM, untrained)" if loaded.is_random else "")


def compare_title(loaded: weights_lib.Weights, target: vgg.Target) -> str:
  """The compare figure's title (the command's and `jaxviz.show`'s)."""
  return f"{target.describe()}, {weights_title(loaded)}"


def probe_footnote(loaded: weights_lib.Weights, recipe_name: str | None) -> str:
  """The probe figure's footnote: the weights, and the recipe of its renders if it has
  any (the command's and `jaxviz.show`'s)."""
  return weights_title(loaded) + ("" if recipe_name is None else
                                   f"; renders: recipe {recipe_name}")


def _photo_name(image) -> str:
  """How outputs name a photo given as a path or as an array."""
  return fileio.display(image) if isinstance(image, (str, os.PathLike)) else "array"


# convert, classify: no rendering. (layers, info and atlas, which load no model, are in
# `no_model`, so that they start without JAX.)

@dataclasses.dataclass(frozen=True)
class ConvertOutcome:
  """A converted weights file (`jaxviz convert`)."""

  out: Path
  arch: str
  tensors: int

  def to_json(self) -> dict:
    return {"out": str(self.out), "arch": self.arch, "tensors": self.tensors}


def convert(src, out, arch: str | None = None) -> ConvertOutcome:
  """A torchvision `.pth` state dict as a jaxviz `.safetensors`, strictly checked,
  written atomically and byte-deterministically."""
  import jaxviz_convert.torch_weights as torch_weights  # the weight tables, on demand

  arch = torch_weights.convert_file(src, out, arch)
  return ConvertOutcome(Path(out), arch, len(networks.param_shapes(arch)))


@dataclasses.dataclass(frozen=True, repr=False)
class ClassifyOutcome(ShortRepr):
  """ImageNet's top classes for a photo (`jaxviz classify`)."""

  image: str
  weights: weights_lib.Weights
  top: list[dict]

  def to_json(self) -> dict:
    return {"image": self.image, "weights": self.weights.label,
            "random_weights": self.weights.is_random, "top": self.top}


def classify(image, model: ModelSettings = ModelSettings(), top: int = 5,
             events: Events = Events()) -> ClassifyOutcome:
  """The top `top` ImageNet classes of a photo (a path or an (H, W, 3) array)."""
  from jaxviz import classify as classify_lib

  _positive("top", top, max(nets.num_classes(arch) for arch in nets.ARCHS))
  photo = fileio.as_photo(image)
  loaded = load(model, events)
  _positive("top", top, nets.num_classes(loaded.arch))
  return ClassifyOutcome(_photo_name(image), loaded,
                         classify_lib.classify(loaded, photo, top, model.precision))


# Rendering into a directory: render, sweep.

def render(layer, maps, out, model: ModelSettings = ModelSettings(),
           options: RenderOptions = RenderOptions(), *, pre_relu: bool = False, init=None,
           force: bool = False, photos=None, k: int | None = None,
           events: Events = Events()) -> rendering.RenderOutcome:
  """Renders `maps` of `layer` into the directory `out` (`jaxviz render`): a PNG per map,
  grid.png and render.json; resumes what a killed or failed run left. With `photos`,
  then adds the trust numbers (`trust`; the outcome's `trust`)."""
  options = options.check()
  if init is not None:
    fileio.read_image(init)
  _check_trust_photos(photos, k)
  fileio.ensure_writable_dir(out)
  loaded, target = load_target(model, layer, pre_relu, events)
  map_list = layers_lib.parse_maps(maps, target.layer)
  events.begin(f"{target.describe()}, {plural(len(map_list), 'map')}")
  outcome = rendering.render_to_dir(loaded, target, map_list, out, options, init_path=init,
                                    force=force, events=events)
  return _with_trust(outcome, out, photos, model, loaded, k, events)


def _check_trust_photos(photos, k: int | None) -> tuple[list[Path], int]:
  """`photos` (if any) is a folder with more than `k` (None: TOP_PHOTOS) image files:
  returns them (none without `photos`, where `k` must be None) and k. Render and sweep
  call it before rendering."""
  if photos is None:
    if k is not None:
      raise SettingError("k", "counts the top photos a render is compared with: it needs photos")
    return [], TOP_PHOTOS
  k = TOP_PHOTOS if k is None else k
  if not (isinstance(k, int) and k >= 2):
    raise SettingError("k", f"must be at least 2 (the top photos are compared in pairs), got {k!r}")
  found = probe_lib.find_images(photos)
  if len(found) <= k:
    raise JaxvizError(f"k = {k} needs more than {k} photos; {fileio.display(photos)} has "
                      f"{len(found)}")
  return found, k


def _with_trust(outcome, out, photos, model: ModelSettings, loaded, k: int | None,
                events: Events):
  """`outcome` with the trust numbers of what is finished in `out` against `photos`, and
  its record as it is after them."""
  if photos is None:
    return outcome
  found = trust(out, photos, dataclasses.replace(model, weights=loaded), k=k, events=events)
  return dataclasses.replace(outcome, trust=found,
                             record=store.read_record(Path(out) / store.RECORD_NAME))


@dataclasses.dataclass(frozen=True, repr=False)
class SweepOutcome(ShortRepr):
  """A sweep: its render (`rendering.RenderOutcome`) and its atlas."""

  render: rendering.RenderOutcome
  atlas: atlas_lib.AtlasResult

  @property
  def weights(self) -> weights_lib.Weights:
    return self.render.weights

  @property
  def trust(self):
    """The trust numbers (`TrustOutcome`), with `--photos`."""
    return self.render.trust

  def to_json(self) -> dict:
    return {**self.render.to_json(), "atlas": str(self.atlas.index)}

  def error(self) -> JaxvizError | None:
    return self.render.error()


def sweep(layer, out, model: ModelSettings = ModelSettings(),
          options: RenderOptions = RenderOptions(), *, maps="all", pre_relu: bool = False,
          top_images=None, distributed: bool = False, process_index: int | None = None,
          process_count: int = 1, force: bool = False, photos=None, k: int | None = None,
          events: Events = Events()) -> SweepOutcome:
  """Every map of a layer (or `maps`), chunked over every local device, resumable, then
  the atlas (`jaxviz sweep`). With `distributed`, `jax.distributed.initialize()`
  first; process K of N renders maps[K::N]. With `photos`, the trust numbers are added
  before the atlas is built (one process only: a distributed sweep runs `trust` after)."""
  if distributed:  # before anything starts JAX's backend
    process_index, process_count = execution.initialize_distributed()
  _positive("process_count", process_count)
  if not 0 <= (process_index or 0) < process_count:
    raise SettingError("process_index", f"must be in 0..{process_count - 1}, got "
                                        f"{process_index}")
  options = options.check()
  table = atlas_lib.read_top_images(top_images) if top_images is not None else None
  if photos is not None and process_count > 1:
    raise JaxvizError("--photos is for a sweep in one process; run `jaxviz trust DIR --photos "
                      "FOLDER` once every process has finished")
  _check_trust_photos(photos, k)
  fileio.ensure_writable_dir(out)
  loaded, target = load_target(model, layer, pre_relu, events)
  map_list = layers_lib.parse_maps(maps, target.layer)
  devices = jax.local_devices()
  events.note(f"{len(devices)} {devices[0].platform} device(s)"
              + (f", process {process_index or 0} of {process_count}" if process_count > 1
                 else ""))
  events.begin(f"{target.describe()} maps")
  outcome = rendering.render_to_dir(loaded, target, map_list, out, options, force=force,
                                    process_index=process_index or 0,
                                    process_count=process_count, events=events)
  try:
    outcome = _with_trust(outcome, out, photos, model, loaded, k, events)
  finally:  # the finished maps get their atlas even if the trust numbers fail
    built = atlas_lib.build_atlas(out, table)
  return SweepOutcome(outcome, built)


# Photos: probe, top-images, spectrum.

@dataclasses.dataclass(frozen=True, repr=False)
class ProbeOutcome(ShortRepr):
  """The write-up's hypothesis test on one photo (`jaxviz probe`).

  Attributes:
    result: the ranking (`probe.ProbeResult`: `top`, `asked`, `means`, `photo`).
    image: the photo as given.
    weights, target: what ranked it.
    figure: the figure written, if any.
    renders: the renders made for the figure, if any.
  """

  result: probe_lib.ProbeResult
  image: str
  weights: weights_lib.Weights
  target: vgg.Target
  figure: Path | None = None
  renders: rendering.RenderOutcome | None = None

  @property
  def top(self):
    return self.result.top

  @property
  def asked(self):
    return self.result.asked

  @property
  def means(self):
    return self.result.means

  @property
  def photo(self):
    return self.result.photo

  def to_json(self) -> dict:
    return self.result.to_json(self.image, self.weights.label)

  def error(self) -> JaxvizError | None:
    return self.renders.error() if self.renders is not None else None


def probe(image, layer, model: ModelSettings = ModelSettings(), *, top: int = 15,
          maps: Sequence[int] = (), pre_relu: bool = False, figure=None,
          events: Events = Events()) -> ProbeOutcome:
  """Ranks a layer's maps by their mean activation on a photo (SPEC §3): the answer,
  before any figure (`probe_figure`). `figure`, the path the figure will be drawn
  to, is checked first, so that a bad path fails before the work."""
  if figure is not None:
    fileio.ensure_writable_dir(Path(figure).parent)
  photo = fileio.as_photo(image)
  loaded, target = load_target(model, layer, pre_relu, events)
  result = probe_lib.probe(loaded, photo, target, top=top, maps=maps)
  return ProbeOutcome(result, _photo_name(image), loaded, target)


def probe_figure(outcome: ProbeOutcome, out, options: RenderOptions = RenderOptions(), *,
                 renders="renders", with_renders: bool = True,
                 events: Events = Events()) -> ProbeOutcome:
  """The write-up's figure of a probe: the photo, the means, and the top maps' renders,
  read from the render directory `renders` and rendered into it where missing."""
  from jaxviz import figures

  options = options.check()
  fileio.ensure_writable_dir(Path(out).parent)
  loaded, target, result = outcome.weights, outcome.target, outcome.result
  top_maps = [m for _, m, _ in result.top]
  rendered, images = None, None
  recipe_name = options.schedule.recipe(None).name
  if with_renders:
    quicker = "" if options.preview else ", --preview renders quickly"
    events.note(f"the figure needs renders of the top {plural(len(top_maps), 'map')} "
                f"(recipe {recipe_name}) from {fileio.display(renders)}; --no-renders draws "
                f"it without them{quicker}")
    events.begin(f"rendering the top {plural(len(top_maps), 'map')} into "
                 f"{fileio.display(renders)}")
    rendered = rendering.render_to_dir(loaded, target, top_maps, renders, options,
                                       events=events)
    images = store.load_renders(renders, top_maps, rendered.record["identity_hash"])
  footnote = probe_footnote(loaded, recipe_name if with_renders else None)
  title = f"Top {len(top_maps)} Feature Maps from {target.describe()}"
  figures.probe_figure(result.photo, result.means, top_maps, target.describe(), images, out,
                       footnote=footnote, asked=result.asked,
                       text=fileio.png_text(title, {**target.provenance(),
                                                    "photo": outcome.image,
                                                    **loaded.provenance()}))
  return dataclasses.replace(outcome, figure=Path(out), renders=rendered)


@dataclasses.dataclass(frozen=True, repr=False)
class TopImagesOutcome(ShortRepr):
  """A folder's photos ranked by a map, or by every map (`jaxviz top-images`).

  Attributes:
    scores: every map's mean on every photo (`probe.FolderScores`).
    table: with every map: the `top-images --all-maps` table (`atlas` reads it).
    ranked: with one map: its top photos, [(path, mean)].
    out: the file written (the table, or a grid of the top photos), if any.
  """

  scores: probe_lib.FolderScores
  weights: weights_lib.Weights
  target: vgg.Target
  map: int | None
  top: int
  table: dict | None = None
  ranked: list | None = None
  out: Path | None = None

  def top_images(self, map_index: int, top: int):
    """[(path, mean)] of map `map_index`'s best `top` photos."""
    return self.scores.top_images(map_index, top)

  @property
  def means(self) -> np.ndarray:
    """(len(images), channels): every map's mean on every photo."""
    return self.scores.means

  @property
  def images(self) -> list[Path]:
    return self.scores.images

  @property
  def skipped(self) -> list[tuple[Path, str]]:
    """[(path, reason)] for the files that could not be read."""
    return self.scores.skipped

  def to_json(self) -> dict:
    if self.table is not None:
      return self.table
    return {**self.target.provenance(), "map": self.map,
            "top": [{"image": fileio.display(p), "mean": v} for p, v in self.ranked],
            "skipped": [fileio.display(path) for path, _ in self.skipped]}


def top_images(folder, layer, model: ModelSettings = ModelSettings(), *,
               map: int | None = None, all_maps: bool = False, top: int = 9,
               pre_relu: bool = False, batch: int = 16, out=None,
               events: Events = Events()) -> TopImagesOutcome:
  """Ranks a folder's photos by one map's mean (with `out`: a grid of the top photos),
  or, with `all_maps`, every map's top photos from the same single pass (with `out`:
  the JSON table)."""
  if (map is None) == (not all_maps):
    raise JaxvizError("give either --map N or --all-maps")
  _positive("top", top)
  _positive("batch", batch)
  paths = probe_lib.find_images(folder)
  if out is not None:
    fileio.ensure_writable_dir(Path(out).parent)
  loaded, target = load_target(model, layer, pre_relu, events)
  if map is not None:
    layers_lib.parse_maps(str(map), target.layer)
  events.begin(f"scoring {len(paths)} images", total=len(paths))
  scores = probe_lib.score_folder(loaded, folder, target, batch=batch,
                                  on_image=lambda: events.work(1),
                                  on_skip=lambda path, why: events.note(f"warning: skipped {why}"))
  if all_maps:
    table = atlas_lib.top_images_table(scores, target, loaded.label, top)
    if out is not None:
      fileio.write_json(out, table)
    return TopImagesOutcome(scores, loaded, target, None, top, table=table,
                            out=None if out is None else Path(out))
  ranked = scores.top_images(map, top)
  if out is not None:
    from jaxviz import figures

    title = f"{target.describe()} map {map}, weights: {loaded.label}"
    figures.titled_grid([fileio.read_image(p) for p, _ in ranked],
                        [f"{fileio.display(p.name)}\n{v:.3f}" for p, v in ranked], out,
                        min(3, len(ranked)), suptitle=title,
                        text=fileio.png_text(title, {**target.provenance(), "map": map,
                                                     **loaded.provenance()}))
  return TopImagesOutcome(scores, loaded, target, map, top, ranked=ranked,
                          out=None if out is None else Path(out))


@dataclasses.dataclass(frozen=True, repr=False)
class SpectrumOutcome(ShortRepr):
  """MACO's magnitude spectrum, averaged over photos (`jaxviz spectrum`)."""

  out: Path | None
  magnitude: np.ndarray
  photos: int

  def to_json(self) -> dict:
    return {"out": None if self.out is None else str(self.out),
            "shape": list(self.magnitude.shape), "photos": self.photos}


def spectrum(folder, out=None, size: int = 1280, events: Events = Events()) -> SpectrumOutcome:
  """The mean decorrelated magnitude spectrum of a folder's photos at `size` px, for
  `--recipe maco`; written as `.npy` to `out` if given."""
  paths = probe_lib.find_images(folder)
  magnitude, used = rendering.photo_spectrum(
      paths, size, on_skip=lambda path, why: events.note(f"warning: skipped {why}"))
  if out is not None:
    with fileio.atomic_write(out) as tmp:
      with open(tmp, "wb") as handle:
        np.save(handle, magnitude)
  return SpectrumOutcome(None if out is None else Path(out), magnitude, used)


# Recipes side by side.

@dataclasses.dataclass(frozen=True, repr=False)
class CompareOutcome(ShortRepr):
  """The same maps under several recipes (`jaxviz compare`).

  Attributes:
    images: {recipe: {map: (S, S', 3) image}}; objectives: {recipe: {map: final}}.
    figure: the figure written, if any.
  """

  images: dict
  objectives: dict
  maps: list[int]
  weights: weights_lib.Weights
  target: vgg.Target
  figure: Path | None

  def to_json(self) -> dict:
    return {**self.target.provenance(), "maps": self.maps, "recipes": list(self.images),
            "objectives": {name: {str(m): v for m, v in values.items()}
                           for name, values in self.objectives.items()},
            "figure": None if self.figure is None else str(self.figure),
            **self.weights.provenance()}


def compare(layer, maps, recipes: Sequence[str] | str = ("seed", "lucid", "maco"),
            model: ModelSettings = ModelSettings(),
            given: RecipeOptions = RecipeOptions(),
            options: RenderOptions = RenderOptions(), *, pre_relu: bool = False,
            out="compare.png", events: Events = Events()) -> CompareOutcome:
  """Renders `maps` with each recipe (`given` applies to every recipe that has the
  setting), one row per map and one column per recipe in the figure `out`. Every
  recipe's settings are checked, against the layer too, before any rendering."""
  names = parse_recipes(recipes if isinstance(recipes, str) else ",".join(recipes))
  options = options.check()
  settings = {name: dataclasses.replace(given, recipe=name).build(strict=False)
              for name in names}
  if out is not None:
    fileio.ensure_writable_dir(Path(out).parent)
  loaded, target = load_target(model, layer, pre_relu, events)
  map_list = layers_lib.parse_maps(maps, target.layer)
  for name in names:
    rendering.layer_recipe(target, settings[name], options.diversity)
  images, objectives = {}, {}
  for name in names:
    events.begin(f"{name}: {plural(len(map_list), 'map')}")
    images[name], objectives[name] = rendering.render_maps(
        loaded, target, map_list, dataclasses.replace(options, schedule=settings[name]), events)
  if out is not None:
    from jaxviz import figures

    title = compare_title(loaded, target)
    figures.compare_figure(images, objectives, map_list, out, title,
                           text=fileio.png_text(title, {**target.provenance(), "maps": map_list,
                                                        "recipes": names,
                                                        **loaded.provenance()}))
  return CompareOutcome(images, objectives, map_list, loaded, target,
                        None if out is None else Path(out))


@dataclasses.dataclass(frozen=True, repr=False)
class TrustOutcome(ShortRepr):
  """A render directory's maps set beside a folder of photos (`jaxviz trust`).

  Attributes:
    maps: each finished map's numbers (`trust.MapTrust`), by map index.
    folder: the photo folder; photos: the photos used, [(path within it, sha256)];
    skipped: the files not read as images, [(path within it, reason)].
    path: the taps compared, from the input up to the rendered one.
    records: the render records the numbers were written into.
  """

  out: Path
  target: vgg.Target
  weights: weights_lib.Weights
  k: int
  path: tuple[str, ...]
  folder: Path
  photos: list[tuple[Path, str]]
  skipped: list[tuple[Path, str]]
  maps: list
  records: list[Path]

  def to_json(self) -> dict:
    return {**self.target.provenance(), "out": fileio.display(self.out), "k": self.k,
            "path": list(self.path), "weights": self.weights.label,
            "folder": fileio.display(self.folder),
            "photos": [{"path": fileio.display(p.as_posix()), "sha256": digest}
                       for p, digest in self.photos],
            "skipped": [fileio.display(p.as_posix()) for p, _ in self.skipped],
            "maps": [result.to_json() for result in self.maps]}


def trust_path(target: vgg.Target) -> tuple[str, ...]:
  """The taps from the input up to `target`'s: the network's trunk taps read before it
  (`nets.trunk`), then the tap rendered."""
  # A tap is counted once: relu5_1 is both conv5_1's reading and the tap rendered, and
  # resnet50's layer2 holds the means of layer2.3, the trunk tap before it.
  same = nets.same_channel_means(target.read, target.arch)
  before = [tap.name for tap in nets.trunk(target.arch)
            if nets.read_tap(tap, target.arch).index < target.read.index and tap.name != same]
  return tuple(before) + (target.feature_name,)


def trust(out, photos, model: ModelSettings = ModelSettings(), *, k: int | None = None,
          events: Events = Events()) -> TrustOutcome:
  """Adds trust numbers (`jaxviz.trust`) to the finished maps of render directory `out`,
  against the photos of folder `photos`: forward passes only, nothing re-rendered."""
  from jaxviz import trust as trust_lib

  paths, k = _check_trust_photos(photos, k)
  out = Path(out)
  records = store.read_records(out)
  if not records:
    raise JaxvizError(f"no render record in {fileio.display(out)}: render into it first")
  digest, identity = records[0]["identity_hash"], records[0]["identity"]
  if any(record["identity_hash"] != digest for record in records):
    raise JaxvizError(f"{fileio.display(out)} holds renders made with different settings")
  loaded, target = load_target(dataclasses.replace(model, arch=identity["arch"]),
                               identity["layer"], bool(identity.get("pre_relu", False)), events)
  made_with = identity["weights"]
  if made_with != rendering.render_identity_weights(loaded):
    raise JaxvizError(f"{fileio.display(out)} was rendered with weights "
                      f"{fileio.display(made_with['label'])}; these are {loaded.label}: pass "
                      "the same --weights")
  files = store.finished_maps(out, digest)
  maps = sorted(files)
  if not maps:
    raise JaxvizError(f"{fileio.display(out)} has no finished renders")
  path = trust_path(target)
  params = loaded.subset(target.model.modules(frozenset(path)))

  def pooled(images: list) -> dict:
    return trust_lib.pooled_features(target.model, params, np.stack(images), path)

  # Photos and renders are held TRUST_CHUNK at a time: only their pooled activations
  # (channels per tap) are kept, so a 512-map sweep or a folder of thousands fits.
  events.begin(f"reading {len(paths)} photos", total=len(paths))
  read, skipped, chunk, photo_chunks = [], [], [], []
  for number, photo_path in enumerate(paths, 1):
    try:
      photo = fileio.read_image(photo_path)
    except JaxvizError as error:
      skipped.append((photo_path.relative_to(photos), str(error)))
      events.note(f"warning: skipped {error}")
    else:
      read.append((photo_path.relative_to(photos), fileio.sha256_file(photo_path)))
      chunk.append(np.asarray(ops.resize_bicubic(photo, INPUT_SIDE, INPUT_SIDE)))
    if chunk and (len(chunk) == TRUST_CHUNK or number == len(paths)):
      photo_chunks.append(pooled(chunk))
      chunk = []
    events.work(1)
  if len(read) <= k:
    raise JaxvizError(f"k = {k} needs more than {k} readable photos; {fileio.display(photos)} "
                      f"has {len(read)}")
  photo_features = {tap: np.concatenate([found[tap] for found in photo_chunks]) for tap in path}
  events.begin(f"comparing {plural(len(maps), 'render')}", total=len(maps))
  results, digests = [], {}
  for start in range(0, len(maps), TRUST_CHUNK):
    renders = store.read_renders(out, files, maps[start:start + TRUST_CHUNK])
    if renders:  # else rendered again meanwhile
      results += trust_lib.maps_trust(target.model, params,
                                      np.stack([image for image, _ in renders.values()]),
                                      list(renders), photo_features, path, k)
      digests.update({str(m): digest_ for m, (_, digest_) in renders.items()})
    events.work(len(renders))
  # Each entry names the bytes its numbers were computed from; a record keeps only those
  # of its PNGs as they are when it is written (`store.add_trust`).
  block = {"version": store.TRUST_VERSION, "k": k, "path": list(path),
           "off_path_below": trust_lib.OFF_PATH, "fragile_below": trust_lib.FRAGILE_BELOW,
           # "/" whatever the system, so that a shared record reads the same everywhere
           "photos": [{"path": fileio.display(p.as_posix()), "sha256": digest_}
                      for p, digest_ in read],
           "maps": {str(result.map): {**{key: value for key, value in result.to_json().items()
                                         if key != "map"}, "sha256": digests[str(result.map)]}
                    for result in results}}
  written = store.add_trust(out, digest, block)
  return TrustOutcome(out, target, loaded, k, path, Path(photos), read, skipped, results,
                      written)

"""One-call functions for notebooks: `jaxviz.render(...)`.

They accept friendly arguments (a layer name, a weights spec or `Weights`, a
seed) and return plain numpy arrays; the CLI calls the same engine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from jaxviz import engine, fileio, figures, layers, ops, settings
from jaxviz import probe as probe_lib
from jaxviz.errors import JaxvizError
from jaxviz.objectives import Target, resolve_target
from jaxviz.weights import Weights, resolve


RECORD_NAME = "render.json"


def _weights(weights: str | Weights, arch: str) -> Weights:
  return weights if isinstance(weights, Weights) else resolve(weights, arch)


def as_photo(path_or_image) -> np.ndarray:
  """A photo given as a path (read as RGB in [0, 1]) or already as an (H, W, 3) array."""
  if isinstance(path_or_image, np.ndarray):
    return path_or_image
  return fileio.read_image(path_or_image)


def start_from_photo(path_or_image, size0: int, dtype: str = "float32") -> np.ndarray:
  """`--init`: a photo as the (size0, size0, 3) start array of a render in `dtype`.

  The photo's 8-bit values are divided by 255 in `dtype` (`fileio.read_image`)
  and resized with the OpenCV-style bicubic in `dtype`: in float64 nothing
  passes through float32. An array given instead of a path is cast to `dtype`.
  """
  photo = (np.asarray(path_or_image, dtype) if isinstance(path_or_image, np.ndarray)
           else fileio.read_image(path_or_image, dtype))
  with engine.dtype_context(dtype):
    return np.asarray(ops.resize_bicubic(jax.numpy.asarray(photo), size0, size0))


def render(layer: str | int, maps: Sequence[int] | str, *, weights: str | Weights = "imagenet",
           pre_relu: bool = False, seed: int = 0, schedule: engine.Schedule = engine.Schedule(),
           batch: int | str = "auto",
           dtype: str = "float32", precision: str = "default", driver: str = "auto",
           init=None, arch: str = layers.DEFAULT_ARCH) -> np.ndarray:
  """Renders feature maps of a layer by activation maximisation (SPEC §2).

  Example:
    images = jaxviz.render("conv5_1", [271, 15], weights="imagenet")

  Args:
    layer: index (24), name ("conv5_1") or "features.24"; a conv layer is
      read after its ReLU, as the write-up's code read it (SPEC §1).
    maps: indices, or a spec string like "0:16" or "all".
    pre_relu: maximise a conv layer's raw output instead.
    weights: "imagenet", "random[:SEED]", a file path, or loaded `Weights`.
    batch: maps per vmapped chunk, or "auto" (`engine.auto_batch`).
    init: optional start photo (path or array) instead of noise.
  Returns:
    (len(maps), S, S, 3) float images in [0, 1]; S = 408 at the defaults.
  """
  loaded = _weights(weights, arch)
  target = resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  if isinstance(maps, str):
    maps = layers.parse_maps(maps, target.layer)
  else:
    maps = layers.parse_maps(",".join(str(int(m)) for m in maps), target.layer)
  start = None if init is None else start_from_photo(init, schedule.size0, dtype)
  if batch == "auto":
    batch = engine.auto_batch(schedule, target, dtype)
  mesh, workers = engine.local_execution()
  results = list(engine.iter_render(loaded.params, maps, settings.prng_key(seed), schedule,
                                    target, batch=batch, start=start, dtype=dtype,
                                    driver=driver, mesh=mesh, workers=workers))
  failed = {int(m): reason for result in results
            for m, reason in zip(result.maps, map(result.failure, range(len(result.maps))))
            if reason}
  if failed:
    raise failures_error(failed)
  return np.concatenate([result.images for result in results])


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
  target = resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
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
  target = resolve_target(layer, loaded.arch, pre_relu=pre_relu, precision=precision)
  return probe_lib.score_folder(loaded, folder, target, batch=batch)


def map_filename(layer: layers.Layer, map_index: int) -> str:
  return f"{layer.index}_{map_index}.png"


def device_description() -> str:
  device = jax.devices()[0]
  return f"{device.platform}: {device.device_kind} x{jax.device_count()}"


def identity_record(loaded: Weights, target: Target, *, seed: int, schedule: engine.Schedule,
                    dtype: str, init_path=None) -> dict:
  """Everything that decides what a map's render looks like (not batch or driver)."""
  return {
      "layer": target.layer.index, "pre_relu": target.pre_relu, "arch": target.arch,
      "seed": seed,
      "schedule": dataclasses.asdict(schedule), "dtype": dtype, "precision": target.precision,
      "init": None if init_path is None else {"path": str(init_path),
                                              "sha256": fileio.sha256_file(init_path)},
      "weights": {"label": loaded.label, "sha256": loaded.sha256, "random": loaded.is_random},
  }


def identity_hash(identity: dict) -> str:
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def record_name(process_index: int = 0, process_count: int = 1) -> str:
  """`render.json`, or `render.p<K>.json` for process K of a multi-process sweep."""
  return RECORD_NAME if process_count == 1 else f"render.p{process_index}.json"


def _record_problem(record) -> str | None:
  """What makes `record` unusable as a render record, or None if nothing does."""
  if not isinstance(record, dict):
    return "not a JSON object"
  record.setdefault("dead_at_start", {})  # fields added after the first format
  record.setdefault("failed", {})
  shapes = {"identity_hash": str, "identity": dict, "sides": list, "files": dict,
            "objectives": dict, "runs": list, "dead_at_start": dict, "failed": dict}
  wrong = [name for name, kind in shapes.items() if not isinstance(record.get(name), kind)]
  if wrong:
    return f"missing or malformed {', '.join(wrong)}"
  identity = record["identity"]
  if not (all(key in identity for key in ("layer", "arch", "seed", "dtype"))
          and isinstance(identity.get("weights"), dict)
          and {"label", "random"} <= set(identity["weights"])):
    return "its identity lacks the layer, arch, seed, dtype or weights"
  if not all(str(m).isdigit() and isinstance(name, str) for m, name in record["files"].items()):
    return "malformed files"
  if not all(str(m).isdigit() and isinstance(values, list) and values
             for m, values in record["objectives"].items()):
    return "malformed objectives"
  return None


def read_record(path) -> dict | None:
  """A render record, checked for shape; None if there is none.

  Raises:
    JaxvizError: naming the file and what to do, if it is unreadable, not
      JSON, or not a record (truncated, edited, another program's file).
  """
  path = Path(path)
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text())
    problem = _record_problem(record)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    problem = str(error)
  if problem is not None:
    raise JaxvizError(f"{path} is not a readable jaxviz render record ({problem}); move it "
                      "away, or rerun with --force to start over")
  return record


def read_records(out_dir, skip_broken: bool = False) -> list[dict]:
  """Every render record in a directory (one per process that wrote there).

  With `skip_broken`, records that `read_record` refuses are left out instead.
  """
  records = []
  for path in sorted(Path(out_dir).glob("render*.json")):
    try:
      record = read_record(path)
    except JaxvizError:
      if not skip_broken:
        raise
      continue
    if record:
      records.append(record)
  return records


def finished_maps(out_dir, identity_hash_: str | None = None,
                  skip_broken: bool = False) -> dict[int, str]:
  """Maps some record lists whose PNG is on disk: {map: file name}.

  With `identity_hash_`, only records made with those settings count.
  """
  done: dict[int, str] = {}
  for record in read_records(out_dir, skip_broken):
    if identity_hash_ is None or record["identity_hash"] == identity_hash_:
      done.update({int(m): name for m, name in record["files"].items()
                   if (Path(out_dir) / name).is_file()})
  return done


@dataclasses.dataclass(frozen=True)
class RenderOutcome:
  """What one `render_to_dir` call did.

  Attributes:
    record: the directory's render record (this process's) after the call.
    rendered: maps rendered and written by this call.
    skipped: maps already finished before the call.
    failed: {map: reason} for maps whose render failed in this call.
    wall_time_s: this call's rendering time.
  """

  record: dict
  rendered: list[int]
  skipped: int
  failed: dict[int, str]
  wall_time_s: float


def render_to_dir(loaded: Weights, target: Target, maps: Sequence[int], out_dir, *, seed: int,
                  schedule: engine.Schedule, batch: int, dtype: str, driver: str,
                  init_path=None, force: bool = False, process_index: int = 0,
                  process_count: int = 1, on_steps=None, on_plan=None, on_batch=None,
                  on_out_of_memory=None, on_dead=None, on_failed=None) -> "RenderOutcome":
  """Renders maps into `out_dir`: one PNG per map, `grid.png` and `render.json`.

  Returns the record and what this call did (`RenderOutcome`).

  `render.json` records the settings that decide the images (and their hash),
  the device, each map's objective per scale and file, and the wall time.
  Each PNG is written atomically as soon as its batch finishes and the record
  is rewritten after every batch, so a killed render loses nothing finished.
  Rerunning into the same directory with the same settings resumes: finished
  maps are skipped and new ones added to the record. Other settings are
  refused unless `force`, which starts the record over. `on_plan(skipped,
  todo, total_steps)` is called once the work is known (maps already done,
  maps to render, their optimisation steps); `on_steps(n)` and
  `on_batch(maps_done)` as it runs. Process K of N (a multi-host sweep) takes
  maps[K::N] and keeps its own record, `render.p<K>.json`.

  Dead maps (objective exactly 0 with a zero gradient on the start image,
  `engine._batched_dead`) are rendered as the write-up's code renders them and
  reported: `record["dead_at_start"][map]` is the first scale whose final
  objective is non-zero (it came alive), or None; `on_dead(map, that scale)`.

  A map whose objective or image stops being finite (`BatchResult.failure`)
  is not written: it goes into `record["failed"]` and `RenderOutcome.failed`
  with the reason (`on_failed(map, reason)` as it happens); the others finish.
  With nothing left to render, nothing is written, so finished renders can be
  read from a read-only directory.
  """
  out_dir = Path(out_dir)
  identity = identity_record(loaded, target, seed=seed, schedule=schedule, dtype=dtype,
                             init_path=init_path)
  digest = identity_hash(identity)
  record_path = out_dir / record_name(process_index, process_count)
  try:
    record = read_record(record_path)
  except JaxvizError:
    if not force:
      raise
    record = None
  if record is not None and record["identity_hash"] != digest and not force:
    raise JaxvizError(
        f"{out_dir} holds renders made with other settings or weights "
        f"({describe_difference(record['identity'], identity)}); use another --out, "
        "or --force to start over")
  if record is None or record["identity_hash"] != digest:
    record = {"identity_hash": digest, "identity": identity, "layer_name": target.layer.name,
              "reads": target.read.name, "sides": list(schedule.sides()), "files": {},
              "objectives": {}, "dead_at_start": {}, "failed": {}, "runs": []}
  maps = list(maps)[process_index::process_count]
  mesh, workers = engine.local_execution()
  done = finished_maps(out_dir, digest, skip_broken=force)
  todo = [m for m in maps if m not in done]
  if on_plan:
    batches = -(-len(todo) // engine.effective_batch(batch, len(todo), mesh, workers)) \
        if todo else 0
    on_plan(len(maps) - len(todo), len(todo), batches * schedule.total_steps())
  if not todo:
    return RenderOutcome(record, [], len(maps), {}, 0.0)
  fileio.ensure_writable_dir(out_dir)
  run = {"maps": todo, "batch": batch, "workers": workers,
         "driver": engine.resolve_driver(driver),
         "jax_version": jax.__version__, "device": device_description(), "wall_time_s": 0.0}
  record["runs"].append(run)
  start = None if init_path is None else start_from_photo(init_path, schedule.size0, dtype)
  began = time.perf_counter()
  results = engine.iter_render(loaded.params, todo, settings.prng_key(seed), schedule, target,
                               batch=batch, start=start, dtype=dtype, driver=driver,
                               mesh=mesh, workers=workers, on_steps=on_steps,
                               on_out_of_memory=on_out_of_memory)
  failed: dict[int, str] = {}
  for result in results:
    for row, map_index in enumerate(int(m) for m in result.maps):
      key = str(map_index)
      reason = result.failure(row)
      if reason:
        failed[map_index] = record["failed"][key] = reason
        if on_failed:
          on_failed(map_index, reason)
        continue
      name = map_filename(target.layer, map_index)
      fileio.write_png(out_dir / name, result.images[row])
      record["failed"].pop(key, None)
      record["files"][key] = name
      objectives = [float(v) for v in result.objectives[row]]
      record["objectives"][key] = objectives
      if result.dead_at_start[row]:
        alive = [scale for scale, value in enumerate(objectives) if value != 0]
        record["dead_at_start"][key] = alive[0] if alive else None
        if on_dead:
          on_dead(map_index, alive[0] if alive else None)
    run["wall_time_s"] = round(time.perf_counter() - began, 3)
    fileio.write_json(record_path, record)
    if on_batch:
      on_batch(len(result.maps))
  fileio.write_json(record_path, record)
  write_grid(out_dir, digest, f"{target.describe()}, weights: {loaded.label}", skip_broken=force)
  rendered = [m for m in todo if m not in failed]
  return RenderOutcome(record, rendered, len(maps) - len(todo), failed, run["wall_time_s"])


def failures_error(failed: dict[int, str], out_dir=None) -> JaxvizError:
  """The one error a render with failed maps ends with, after the others are finished."""
  map_index, reason = next(iter(failed.items()))
  where = (f"; no image was written for it, the others are in {out_dir} and its render "
           "record lists the failures" if out_dir is not None else "")
  return JaxvizError(f"{len(failed)} map{'s' if len(failed) > 1 else ''} failed (map "
                     f"{map_index}: {reason}){where}")


def describe_difference(old: dict, new: dict) -> str:
  changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
  return "differs in " + ", ".join(changed) if changed else "an older record format"


def load_renders(out_dir, maps: Sequence[int] | None = None, identity_hash_: str | None = None,
                 skip_broken: bool = False) -> dict[int, np.ndarray]:
  """The finished renders among `maps` (None: all) in a render directory, as [0, 1] arrays."""
  files = finished_maps(out_dir, identity_hash_, skip_broken)
  wanted = sorted(files) if maps is None else [m for m in maps if m in files]
  return {m: fileio.read_image(Path(out_dir) / files[m]) for m in wanted}


def write_grid(out_dir, identity_hash_: str, title: str, skip_broken: bool = False) -> None:
  images = load_renders(out_dir, None, identity_hash_, skip_broken)
  if images:
    figures.render_grid(list(images.values()), list(images), Path(out_dir) / "grid.png",
                        suptitle=title)

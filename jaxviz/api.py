"""One-call functions for notebooks: `jaxviz.render(...)`.

They accept friendly arguments (a layer name, a weights spec or `Weights`, a
seed) and return plain numpy arrays; the CLI calls the same engine.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import jax
import numpy as np

from jaxviz import engine, fileio, figures, layers, ops
from jaxviz.objectives import Target
from jaxviz.weights import Weights, resolve


def _weights(weights: str | Weights, arch: str) -> Weights:
  return weights if isinstance(weights, Weights) else resolve(weights, arch)


def start_from_photo(path_or_image, size0: int) -> np.ndarray:
  """A photo (path or (H, W, 3) array in [0, 1]) resized to size0 x size0 with OpenCV bicubic."""
  image = fileio.read_image(path_or_image) if not isinstance(path_or_image, np.ndarray) \
      else path_or_image
  return np.asarray(ops.resize_bicubic(jax.numpy.asarray(image, np.float32), size0, size0))


def render(layer: str | int, maps: Sequence[int] | str, *, weights: str | Weights = "imagenet",
           seed: int = 0, schedule: engine.Schedule = engine.Schedule(), batch: int = 8,
           dtype: str = "float32", precision: str = "default", driver: str = "auto",
           init=None, arch: str = layers.DEFAULT_ARCH) -> np.ndarray:
  """Renders feature maps of a layer by activation maximisation (SPEC §2).

  Example:
    images = jaxviz.render("conv5_1", [271, 15], weights="imagenet")

  Args:
    layer: index (24), name ("conv5_1") or "features.24".
    maps: indices, or a spec string like "0:16" or "all".
    weights: "imagenet", "random[:SEED]", a file path, or loaded `Weights`.
    init: optional start photo (path or array) instead of noise.
  Returns:
    (len(maps), S, S, 3) float images in [0, 1]; S = 408 at the defaults.
  """
  loaded = _weights(weights, arch)
  target = Target(layers.resolve_layer(layer, loaded.arch), loaded.arch, precision)
  if isinstance(maps, str):
    maps = layers.parse_maps(maps, target.layer)
  else:
    maps = layers.parse_maps(",".join(str(int(m)) for m in maps), target.layer)
  start = None if init is None else start_from_photo(init, schedule.size0)
  results = engine.iter_render(loaded.params, maps, jax.random.key(seed), schedule, target,
                               batch=batch, start=start, dtype=dtype, driver=driver)
  return np.concatenate([result.images for result in results])


def map_filename(layer: layers.Layer, map_index: int) -> str:
  return f"{layer.index}_{map_index}.png"


def device_description() -> str:
  device = jax.devices()[0]
  return f"{device.platform}: {device.device_kind} x{jax.device_count()}"


def render_to_dir(loaded: Weights, target: Target, maps: Sequence[int], out_dir, *, seed: int,
                  schedule: engine.Schedule, batch: int, dtype: str, driver: str,
                  init_path=None, on_steps=None) -> dict:
  """Renders maps into `out_dir`: one PNG per map, `grid.png` and `render.json`.

  Each PNG is written atomically as soon as its batch finishes, and
  `render.json` is rewritten after every batch, so an interrupted render keeps
  everything it finished. Returns the render.json record.
  """
  out_dir = Path(out_dir)
  start = None if init_path is None else start_from_photo(init_path, schedule.size0)
  record = {
      "layer": target.layer.index, "layer_name": target.layer.name, "arch": target.arch,
      "maps": list(maps), "sides": list(schedule.sides()),
      "settings": {"seed": seed, "size0": schedule.size0, "scales": schedule.scales,
                   "upscale": schedule.upscale, "steps": schedule.steps, "lr": schedule.lr,
                   "weight_decay": schedule.weight_decay, "blur": schedule.blur,
                   "batch": batch, "dtype": dtype, "precision": target.precision,
                   "driver": engine.resolve_driver(driver),
                   "init": None if init_path is None else str(init_path)},
      "weights": {"label": loaded.label, "sha256": loaded.sha256, "random": loaded.is_random},
      "jax_version": jax.__version__, "device": device_description(),
      "objectives": {}, "files": {}, "wall_time_s": None,
  }
  images, done = [], []
  began = time.perf_counter()
  for result in engine.iter_render(loaded.params, maps, jax.random.key(seed), schedule, target,
                                   batch=batch, start=start, dtype=dtype, driver=driver,
                                   on_steps=on_steps):
    for map_index, image, objectives in zip(result.maps, result.images, result.objectives):
      name = map_filename(target.layer, int(map_index))
      fileio.write_png(out_dir / name, image)
      record["files"][str(map_index)] = name
      record["objectives"][str(map_index)] = [float(v) for v in objectives]
      images.append(image)
      done.append(int(map_index))
    record["wall_time_s"] = round(time.perf_counter() - began, 3)
    fileio.write_json(out_dir / "render.json", record)
  title = f"layer {target.layer.index} ({target.layer.name}), weights: {loaded.label}"
  figures.render_grid(images, done, out_dir / "grid.png", suptitle=title)
  return record

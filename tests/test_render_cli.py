"""`jaxviz render` and `jaxviz.render`: outputs, records, bad input, atomic writes."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import jaxviz
from jaxviz import api, app, fileio, layers
from jaxviz.errors import JaxvizError
from jaxviz.progress import plural
from jaxviz.vgg import resolve_target

import torch_reference
from conftest import (assert_names_all, error_line, render_layer_batch, run_cli, save_pth,
                      start_images)
from jaxviz.optvis.recipes import Schedule

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]
TINY_SCHEDULE = Schedule(size0=32, scales=2, steps=3)


def test_render_writes_pngs_grid_and_record(tmp_path, vgg16_safetensors, vgg16_weights):
  out = tmp_path / "renders"
  result = run_cli("render", "--layer", "conv3_1", "--maps", "0:2,40", "--weights",
                   vgg16_safetensors, "--out", out, "--json", *TINY)
  record = json.loads(result.stdout[result.stdout.index("{"):])
  assert sorted(p.name for p in out.iterdir()) == ["10_0.png", "10_1.png", "10_40.png",
                                                   "grid.png", "render.json"]
  assert record == json.loads((out / "render.json").read_text())
  identity = record["identity"]
  assert identity["layer"] == 10 and record["layer_name"] == "conv3_1"
  assert record["files"] == {"0": "10_0.png", "1": "10_1.png", "40": "10_40.png"}
  assert record["sides"] == [32, 38]
  assert identity["seed"] == 0 and identity["schedule"]["size0"] == 32
  assert identity["schedule"]["lr"] == 0.01 and identity["dtype"] == "float32"
  assert identity["weights"]["sha256"] == vgg16_weights.sha256
  run = record["runs"][-1]
  assert run["device"].startswith("cpu") and run["jax_version"] and run["wall_time_s"] > 0
  assert run["maps"] == [0, 1, 40] and run["driver"] == "loop"
  assert len(record["objectives"]["40"]) == 2

  # The PNG is the engine's image, rounded to 8 bits.
  expected = api.render(10, [40], weights=vgg16_weights, schedule=TINY_SCHEDULE)[0]
  png = np.asarray(Image.open(out / "10_40.png"))
  assert png.shape == (38, 38, 3) and png.dtype == np.uint8
  np.testing.assert_array_equal(png, fileio.to_uint8(expected))


def test_python_api_renders_by_name_and_spec(vgg16_weights):
  images = jaxviz.render("conv3_1", "3:5", weights=vgg16_weights, schedule=TINY_SCHEDULE)
  assert images.shape == (2, 38, 38, 3) and 0 <= images.min() and images.max() <= 1
  again = jaxviz.render(10, [4], weights=vgg16_weights, schedule=TINY_SCHEDULE)
  np.testing.assert_allclose(again[0], images[1], atol=1e-5)


def test_init_photo_replaces_the_noise(tmp_path, photo_files, vgg16_weights):
  photo = photo_files["chelsea.jpg"]
  from_photo = jaxviz.render(10, [4], weights=vgg16_weights, schedule=TINY_SCHEDULE, init=photo)
  from_noise = jaxviz.render(10, [4], weights=vgg16_weights, schedule=TINY_SCHEDULE)
  assert np.abs(from_photo - from_noise).mean() > 0.05
  # A few small steps leave the photo recognisable: close to its own resize.
  resized = app.photo_start(photo, 38)
  assert np.abs(from_photo[0] - np.clip(resized, 0, 1)).mean() < np.abs(
      from_noise[0] - np.clip(resized, 0, 1)).mean()
  out = tmp_path / "o"
  run_cli("render", "--layer", "10", "--maps", "4", "--weights", "random", "--out", out,
          "--init", photo, *TINY)
  init = json.loads((out / "render.json").read_text())["identity"]["init"]
  assert init == {"path": str(photo), "sha256": fileio.sha256_file(photo)}


def test_rerun_resumes_and_other_settings_are_refused(tmp_path):
  out = tmp_path / "o"
  base = ["render", "--layer", "10", "--weights", "random", "--out", out, *TINY]
  run_cli(*base, "--maps", "0:2")
  first = (out / "10_0.png").stat().st_mtime_ns
  result = run_cli(*base, "--maps", "0:3")
  assert "2 maps already rendered" in result.output
  assert (out / "10_0.png").stat().st_mtime_ns == first
  record = json.loads((out / "render.json").read_text())
  assert sorted(record["files"]) == ["0", "1", "2"] and record["runs"][-1]["maps"] == [2]

  line = error_line(run_cli(*base, "--maps", "0", "--lr", "0.02", expect_exit=1))
  assert_names_all(line, "other settings", "schedule", "--force")
  run_cli(*base, "--maps", "0", "--lr", "0.02", "--force")
  assert sorted(json.loads((out / "render.json").read_text())["files"]) == ["0"]


@pytest.mark.parametrize("args,needles", [
    (["--layer", "31", "--maps", "0"], ["unknown layer '31'", "24 (conv5_1)", "30 (pool5)"]),
    (["--layer", "conv9_9", "--maps", "0"], ["unknown layer", "0 (conv1_1)"]),
    (["--layer", "24", "--maps", "512"], ["map 512", "512 maps (0..511)"]),
    (["--layer", "7", "--maps", "0:200"], ["map 128", "conv2_2", "128 maps"]),
    (["--layer", "24", "--maps", "1,two"], ["cannot read --maps '1,two'"]),
    (["--layer", "24", "--maps", "5:5"], ["empty"]),
    (["--layer", "24", "--maps", "1", "--size0", "0"], ["--size0 0", "minimum is 16"]),
    (["--layer", "24", "--maps", "1", "--size0", "15"], ["--size0 15", "minimum is 16"]),
    (["--layer", "24", "--maps", "1", "--dtype", "half"], ["--dtype"]),
    (["--layer", "24", "--maps", "1", "--blur", "4"], ["--blur", "odd"]),
    (["--layer", "24", "--maps", "1", "--batch", "0"], ["--batch"]),
    (["--layer", "24", "--maps", "1", "--init", "nope.jpg"], ["image not found", "nope.jpg"]),
])
def test_bad_render_input_is_one_line(tmp_path, args, needles):
  result = run_cli("render", *args, "--weights", "random", "--out", tmp_path / "o",
                   expect_exit=1)
  assert_names_all(error_line(result), *needles)


def test_unwritable_out_is_named(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("a file where the output directory should go")
  result = run_cli("render", "--layer", "10", "--maps", "0", "--weights", "random",
                   "--out", blocker / "renders", expect_exit=1)
  assert_names_all(error_line(result), "cannot write to", "renders")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
  target = tmp_path / "x.png"
  with pytest.raises(RuntimeError):
    with fileio.atomic_write(target) as tmp:
      tmp.write_bytes(b"half")
      raise RuntimeError("killed")
  assert list(tmp_path.iterdir()) == []


def complete_pngs(folder: Path) -> list[str]:
  names = []
  for path in folder.glob("*.png"):
    with Image.open(path) as image:
      image.load()  # raises on a truncated file
    names.append(path.name)
  return names


def test_killed_render_leaves_only_complete_pngs(tmp_path):
  """kill -9 mid-render: every PNG on disk is whole, and render.json names only those."""
  out = tmp_path / "o"
  command = [sys.executable, "-m", "jaxviz.cli", "render", "--layer", "10", "--maps", "0:40",
             "--batch", "1", "--weights", "random", "--out", str(out), "--size0", "32",
             "--scales", "2", "--steps", "2"]
  process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
  deadline = time.time() + 120
  while time.time() < deadline and len(list(out.glob("10_*.png"))) < 2:
    time.sleep(0.05)
  os.killpg(process.pid, signal.SIGKILL)
  process.wait()
  written = complete_pngs(out)
  assert 2 <= len(written) < 40
  record = json.loads((out / "render.json").read_text())
  assert set(record["files"].values()) <= set(written)
  # Rerunning finishes the job, skipping what the killed run completed.
  rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr
  # The record may lag the PNGs by a map (it is written after them), so it can name one.
  assert f"{plural(len(record['files']), 'map')} already rendered" in rerun.stderr
  assert len(complete_pngs(out)) == 41  # 40 maps and grid.png


def test_parse_maps_orders_and_dedupes():
  layer = layers.resolve_layer(24)
  assert layers.parse_maps("271, 15,0:3,15", layer) == [271, 15, 0, 1, 2]
  assert layers.parse_maps("510:", layer) == [510, 511]
  assert len(layers.parse_maps("all", layer)) == 512
  with pytest.raises(JaxvizError):
    layers.parse_maps("", layer)


SMALL = Schedule(size0=32, scales=3, steps=10)


def test_init_photo_becomes_the_start_array_in_the_render_dtype(photo_files, vgg16_weights,
                                                                torch_vgg16):
  """--init in float64 never passes through float32: 8-bit values / 255 and the resize in
  float64, as torch computes them; the render from it equals the write-up's loop."""
  photo = photo_files["chelsea.jpg"]
  pixels = torch.from_numpy(np.asarray(Image.open(photo).convert("RGB")) / 255.0)
  expected = F.interpolate(pixels.permute(2, 0, 1)[None], size=(32, 32), mode="bicubic",
                           align_corners=False)[0].permute(1, 2, 0).numpy()
  start = app.photo_start(photo, 32, "float64")
  assert start.dtype == np.float64
  np.testing.assert_allclose(start, expected, rtol=0, atol=1e-12)
  single = app.photo_start(photo, 32, "float32")
  assert single.dtype == np.float32 and 0 < np.abs(single - expected).max() < 1e-5

  images = jaxviz.render(10, [4], weights=vgg16_weights, schedule=SMALL, init=photo,
                         dtype="float64")
  reference, _ = torch_reference.render_map(torch_vgg16, 10, 4, expected, SMALL)
  np.testing.assert_allclose(images[0], reference, rtol=0, atol=1e-6)


def test_a_dead_map_is_reported_and_rendered_as_the_write_up_does(tmp_path, torch_vgg16):
  """Map 7 of conv3_1 below zero everywhere (bias -1000): no gradient, only weight decay."""
  model = copy.deepcopy(torch_vgg16)
  with torch.no_grad():
    model.features[10].bias[7] = -1000.0
  weights_file = save_pth(model, tmp_path / "dead7.pth")
  out = tmp_path / "o"
  result = run_cli("render", "--layer", "10", "--maps", "5,7", "--weights", weights_file,
                   "--dtype", "float64", "--out", out, "--size0", "32", "--scales", "2",
                   "--steps", "4")
  assert "map 7 is dead at the start" in result.output and "never came alive" in result.output
  assert "map 5 is dead" not in result.output
  record = json.loads((out / "render.json").read_text())
  assert record["dead_at_start"] == {"7": None}
  assert record["objectives"]["7"] == [0.0, 0.0]

  loaded = app.load_weights(str(weights_file))
  schedule = Schedule(size0=32, scales=2, steps=4)  # the command's
  ours = render_layer_batch(loaded.params, np.array([5, 7]), jax.random.key(0), schedule,
                             resolve_target(10), dtype="float64")
  assert list(ours.dead_at_start) == [False, True]
  expected, _ = torch_reference.render_map(model, 10, 7, start_images([7])[0], schedule)
  np.testing.assert_allclose(ours.images[1], expected, rtol=0, atol=1e-6)

  run_cli("atlas", out)
  assert (out / "index.html").read_text().count("dead at start") == 2  # badge and summary

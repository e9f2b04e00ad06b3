"""Input from elsewhere is untrusted, second round: render records and atlases, files
handed to options, PNGs given to `info`, the Python API's arguments, the compilation
cache, concurrent runs, and conversion. Each family is tested at the public interface
(the CLI or `jaxviz.*`): one clear line, a non-zero exit, no traceback, nothing read
or written outside the directory given, and finished work kept.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

import jaxviz
from jaxviz import app as app_lib
from jaxviz import fileio, store
from jaxviz.errors import JaxvizError, SettingError
from jaxviz.optvis import recipes

from conftest import (assert_names_all, assert_one_clean_error, cli_subprocess, error_line,
                      png_claiming_size, run_cli)

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]
PAYLOAD = '<script>alert("jaxviz")</script>'


@pytest.fixture(scope="module")
def finished_sweep(tmp_path_factory) -> Path:
  """A finished 3-map sweep (float64, so a re-render is the same PNG, byte for byte);
  tests copy it before changing it."""
  out = tmp_path_factory.mktemp("sweep") / "o"
  run_cli("sweep", "--layer", "10", "--maps", "0:3", "--weights", "random", "--out", out,
          "--dtype", "float64", *TINY)
  return out


@pytest.fixture
def sweep_copy(finished_sweep, tmp_path) -> Path:
  out = tmp_path / "shared"
  shutil.copytree(finished_sweep, out)
  return out


def edit_record(out: Path, change) -> None:
  path = out / "render.json"
  record = json.loads(path.read_text())
  change(record)
  path.write_text(json.dumps(record))


SWEEP_AGAIN = ["sweep", "--layer", "10", "--maps", "0:3", "--weights", "random", "--dtype",
               "float64", *TINY]


# 1. A render directory is data: not code, and not a list of paths.

@pytest.mark.parametrize("place", ["label", "layer_name", "recipe", "photo", "arch"])
def test_text_from_a_record_or_table_reaches_the_page_escaped(sweep_copy, tmp_path, place,
                                                               photo_files):
  def change(record):
    if place == "label":
      record["identity"]["weights"]["label"] = PAYLOAD
    elif place == "recipe":
      record["identity"]["recipe"]["name"] = PAYLOAD
    elif place == "arch":
      record["identity"]["arch"] = PAYLOAD
    elif place != "photo":
      record[place] = PAYLOAD
  edit_record(sweep_copy, change)
  named = tmp_path / f"{PAYLOAD.replace('/', '_')}.png"
  shutil.copy(photo_files["astronaut.png"], named)
  table = tmp_path / "table.json"
  table.write_text(json.dumps({"maps": {"1": [{"image": str(named), "mean": 1.0}]}}))
  run_cli("atlas", sweep_copy, "--top-images", table)
  page = (sweep_copy / "index.html").read_text()
  assert "<script>alert" not in page
  assert page.count("&lt;script&gt;") >= 1


@pytest.mark.parametrize("field,value", [
    ("dtype", PAYLOAD), ("seed", PAYLOAD), ("sides", [PAYLOAD]), ("dead_at_start", PAYLOAD),
    ("objectives", "not a list"), ("objectives", {"0": ["x"]}), ("files", {"0": 7}),
    ("runs", "x"), ("layer", "10"), ("failed", {"0": 3}), ("sha256", {"0": "abc"}),
])
def test_a_record_with_wrong_types_is_refused_in_one_line(sweep_copy, field, value):
  def change(record):
    if field in ("dtype", "seed", "layer"):
      record["identity"][field] = value
    elif field == "dead_at_start":
      record[field] = {"1": value}
    else:
      record[field] = value
  edit_record(sweep_copy, change)
  for command in (["atlas", sweep_copy], [*SWEEP_AGAIN, "--out", sweep_copy]):
    line = error_line(run_cli(*command, expect_exit=1))
    assert_names_all(line, "render.json", "not a readable jaxviz render record", "--force")
  assert "<script>alert" not in (sweep_copy / "index.html").read_text()


def test_a_record_cannot_make_jaxviz_read_or_write_outside_its_directory(sweep_copy, tmp_path):
  victim = tmp_path / "victim.png"
  fileio.write_png(victim, np.full((8, 8, 3), 0.5))
  before = victim.read_bytes()
  edit_record(sweep_copy, lambda record: record["files"].update({"0": "../victim.png"}))
  for command in (["atlas", sweep_copy], [*SWEEP_AGAIN, "--out", sweep_copy]):
    assert "not this layer's map names" in error_line(run_cli(*command, expect_exit=1))
  # A map's PNG replaced by a link to a file outside is not a finished map: it is not
  # read, and rendering it again replaces the link, not the file it points to.
  edit_record(sweep_copy, lambda record: record["files"].update({"0": "10_0.png"}))
  (sweep_copy / "10_0.png").unlink()
  (sweep_copy / "10_0.png").symlink_to(victim)
  (sweep_copy / "thumbs" / "10_0.png").unlink()
  result = run_cli("atlas", sweep_copy)
  assert "10_0.png (map 0) is missing or not the PNG its record made" in result.output
  assert not (sweep_copy / "thumbs" / "10_0.png").exists()
  result = run_cli(*SWEEP_AGAIN, "--out", sweep_copy)
  assert "2 maps already rendered" in result.output
  assert not (sweep_copy / "10_0.png").is_symlink() and victim.read_bytes() == before
  assert not list(tmp_path.glob("thumbs*")) and not (tmp_path / "10_0.png").exists()


def test_links_in_place_of_the_atlas_folders_or_the_lock_are_refused(sweep_copy, tmp_path):
  outside = tmp_path / "outside"
  outside.mkdir()
  shutil.rmtree(sweep_copy / "thumbs")
  (sweep_copy / "thumbs").symlink_to(outside)
  assert "thumbs is a symbolic link" in error_line(run_cli("atlas", sweep_copy, expect_exit=1))
  assert not list(outside.iterdir())
  victim = tmp_path / "victim.txt"
  victim.write_text("keep me")
  out = tmp_path / "fresh"
  out.mkdir()
  (out / ".render.json.lock").symlink_to(victim)
  line = error_line(run_cli("render", "--layer", "10", "--maps", "0", "--weights", "random",
                            "--out", out, *TINY, expect_exit=1))
  assert ".render.json.lock is a symbolic link" in line
  assert victim.read_text() == "keep me"


@pytest.mark.parametrize("table,needle", [
    ({"maps": []}, 'no "maps" object'),
    ([1, 2], 'no "maps" object'),
    ({"maps": {"one": []}}, "is not a map index"),
    ({"maps": {"1": "abc"}}, "not a list"),
    ({"maps": {"1": [{"image": 3, "mean": 1.0}]}}, 'not {"image": path, "mean": number}'),
    ({"maps": {"1": [{"image": "a.png", "mean": "high"}]}}, 'not {"image"'),
    ({"maps": {"1": [{"image": "a.png", "mean": 1.0}] * 101}}, "at most 100"),
])
def test_a_malformed_top_images_table_is_one_line(sweep_copy, tmp_path, table, needle):
  path = tmp_path / "table.json"
  path.write_text(json.dumps(table))
  for command in (["atlas", sweep_copy], [*SWEEP_AGAIN, "--out", sweep_copy]):
    line = error_line(run_cli(*command, "--top-images", path, expect_exit=1))
    assert_names_all(line, "table.json", needle)


# 2. Finished work that is broken is found, said, and rendered again.

def test_a_truncated_or_missing_png_is_rendered_again(sweep_copy, finished_sweep):
  (sweep_copy / "10_1.png").write_bytes((finished_sweep / "10_1.png").read_bytes()[:100])
  (sweep_copy / "10_2.png").unlink()
  result = run_cli("atlas", sweep_copy)
  assert "10_1.png (map 1) is missing or not the PNG its record made" in result.output
  assert "(1 map)" in result.output
  page = (sweep_copy / "index.html").read_text()
  assert page.count('class="thumb"') == 1 and "2 missing or damaged" in page
  result = run_cli(*SWEEP_AGAIN, "--out", sweep_copy)
  assert "1 map already rendered" in result.output
  assert_names_all(result.output, "10_1.png (map 1) is missing", "10_2.png (map 2) is missing")
  for name in ("10_1.png", "10_2.png"):
    assert (sweep_copy / name).read_bytes() == (finished_sweep / name).read_bytes()
  assert (sweep_copy / "index.html").read_text().count('class="thumb"') == 3


# 3. Files handed to options, and PNGs handed to `info`.

@pytest.mark.parametrize("kind", ["empty", "npz", "pickle", "shape"])
def test_a_spectrum_that_is_not_one_is_one_line(tmp_path, kind):
  path = tmp_path / ("s.npz" if kind == "npz" else "s.npy")
  if kind == "empty":
    path.write_bytes(b"")
  elif kind == "npz":
    np.savez(path, a=np.ones((3, 32, 17), np.float32))
  elif kind == "pickle":
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
  else:
    np.save(path, np.ones((3, 32, 30), np.float32))
  result = cli_subprocess("render", "--layer", "10", "--maps", "0", "--weights", "random",
                          "--recipe", "maco", "--spectrum", path, "--steps", "1",
                          "--out", tmp_path / "o")
  assert_names_all(assert_one_clean_error(result), "--spectrum", path.name)


def test_compare_refuses_a_repeated_recipe_and_checks_every_recipe_first(tmp_path,
                                                                         monkeypatch):
  line = error_line(run_cli("compare", "--layer", "10", "--maps", "0", "--weights", "random",
                            "--recipes", "seed,seed", "--out", tmp_path / "c.png",
                            expect_exit=1))
  assert "--recipes names seed twice" in line

  def no_rendering(*args, **kwargs):
    raise AssertionError("rendered before every recipe's settings were checked")

  monkeypatch.setattr(app_lib.rendering, "render_maps", no_rendering)
  spectrum = tmp_path / "s.npy"
  np.save(spectrum, np.ones((3, 64, 33), np.float32))  # MACO at 64 px; seed's size0 is 32
  line = error_line(run_cli("compare", "--layer", "10", "--maps", "0", "--weights", "random",
                            "--recipes", "seed,maco", "--spectrum", spectrum, "--size0", "32",
                            "--out", tmp_path / "c.png", expect_exit=1))
  assert "--spectrum has shape (3, 64, 33)" in line


def png_with_text(path: Path, chunks: dict[str, str], compressed: bool = False) -> Path:
  info = PngImagePlugin.PngInfo()
  for key, value in chunks.items():
    info.add_itxt(key, value, zip=compressed)
  Image.new("RGB", (2, 2)).save(path, pnginfo=info)
  return path


def inflating_text_png(path: Path) -> Path:
  """A small PNG whose zTXt chunk (before its pixels, where jaxviz's are) inflates to
  20 MiB."""
  Image.new("RGB", (1, 1)).save(path)
  data = path.read_bytes()
  body = b"jaxviz\x00\x00" + zlib.compress(b"{" * (20 << 20), 9)
  chunk = (len(body).to_bytes(4, "big") + b"zTXt" + body
           + zlib.crc32(b"zTXt" + body).to_bytes(4, "big"))
  end = data.index(b"IDAT") - 4
  path.write_bytes(data[:end] + chunk + data[end:])
  return path


@pytest.mark.parametrize("kind,needle", [
    ("empty", "is not a non-empty JSON object"),
    ("deep", "is not JSON"),
    ("nested", "is nested"),
    ("huge text", "cannot read"),
    ("huge header", "claims more than"),
    ("jpeg", "not a PNG"),
])
def test_info_on_pngs_it_did_not_write_is_one_line(tmp_path, kind, needle):
  path = tmp_path / "odd.png"
  if kind == "empty":
    png_with_text(path, {"jaxviz": "{}"})
  elif kind == "deep":
    png_with_text(path, {"jaxviz": "[" * 20_000 + "]" * 20_000}, compressed=True)
  elif kind == "nested":
    png_with_text(path, {"jaxviz": json.dumps({"layer": {"a": 1}})})
  elif kind == "huge text":
    inflating_text_png(path)
  elif kind == "huge header":
    png_claiming_size(path, 100_000, 100_000)
  else:
    Image.new("RGB", (2, 2)).save(path, format="JPEG")
  for args in (["info", path], ["info", path, "--json"]):
    result = cli_subprocess(*args)
    assert needle in assert_one_clean_error(result)
  assert "error" in json.loads(result.stdout)


def test_a_weights_file_whose_name_is_not_utf8_renders_and_says_its_name(tmp_path,
                                                                        vgg16_safetensors):
  weights = Path(os.fsdecode(os.fsencode(tmp_path) + b"/w\xff.safetensors"))
  shutil.copy(vgg16_safetensors, weights)
  out = tmp_path / "o"
  result = run_cli("render", "--layer", "10", "--maps", "0", "--weights", weights,
                   "--out", out, "--json", *TINY)
  record = json.loads(result.stdout)
  assert record["identity"]["weights"]["label"].endswith("w\\xff.safetensors")
  assert (out / "grid.png").is_file()
  assert "w\\xff.safetensors" in run_cli("info", out / "grid.png").output


def test_a_bad_distributed_environment_variable_is_named(tmp_path, monkeypatch):
  monkeypatch.setenv("JAX_NUM_PROCESSES", "abc")
  line = error_line(run_cli("sweep", "--layer", "10", "--out", tmp_path / "o", "--weights",
                            "random", "--distributed", expect_exit=1))
  assert "the environment variable JAX_NUM_PROCESSES must be a non-negative integer" in line


# 4. The Python API: one line naming the argument.

class SixChannels(nn.Module):
  @nn.compact
  def __call__(self, x):
    return nn.Conv(6, (3, 3), name="conv")(x)


SMALL = jaxviz.Schedule(size0=16, scales=1, steps=2)


@pytest.fixture(scope="module")
def six_params():
  return SixChannels().init(jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]


def test_the_api_names_wrong_params_and_missing_objectives(six_params):
  wrong = jax.tree.map(lambda leaf: jnp.zeros(leaf.shape[:-1] + (4,)), six_params)
  channel = jaxviz.objectives.Channel("conv")
  with pytest.raises(JaxvizError, match=r"^params: the model cannot run"):
    jaxviz.render(SixChannels(), wrong, channel, [0], schedule=SMALL, progress=False)
  with pytest.raises(JaxvizError, match=r"^objective: .* needs an objective"):
    jaxviz.render(SixChannels(), six_params, schedule=SMALL, progress=False)


@pytest.mark.parametrize("unit", [6, 99, -1])
def test_the_api_refuses_a_channel_the_layer_does_not_have(six_params, unit):
  with pytest.raises(JaxvizError, match=rf"^units: {unit} is not a unit .* 0\.\.5"):
    jaxviz.render(SixChannels(), six_params, jaxviz.objectives.Channel("conv"), [0, unit],
                  schedule=SMALL, progress=False)


def test_maco_takes_a_spectrum_array_and_names_a_wrong_one(six_params):
  spectrum = np.abs(np.random.default_rng(0).normal(size=(3, 32, 17))).astype(np.float32)
  recipe = recipes.MacoRecipe(spectrum, steps=1, crops=2, crop_side=16)
  assert recipe.size0 == 32 and recipe.spectrum.array.shape == (3, 32, 17)
  images = jaxviz.render(SixChannels(), six_params,
                         recipe=recipe.recipe(jaxviz.objectives.Channel("conv")),
                         units=[1], progress=False)
  assert images.shape == (1, 32, 32, 3) and np.isfinite(images).all()
  with pytest.raises(SettingError, match="spectrum") as error:
    recipes.MacoRecipe(np.ones((32, 17)))
  assert "not a (3, S, S // 2 + 1) magnitude spectrum" in str(error.value)


@pytest.mark.parametrize("photo,needle", [
    (np.zeros((5, 5, 2)), r"photo must be an \(H, W, 3\) RGB image, got an array of shape"),
    (np.full((8, 8, 3), np.nan), "photo holds non-finite values"),
    (np.full((8, 8, 3), 200.0), r"photo must hold values in \[0, 1\]"),
    (["not", "a", "photo"], "photo must be a path or an"),
])
def test_probe_photo_names_a_photo_it_cannot_use(vgg16_weights, photo, needle):
  with pytest.raises(JaxvizError, match=needle):
    jaxviz.probe_photo(photo, "conv1_1", weights=vgg16_weights)


def test_probe_photo_takes_grey_and_uint8_arrays_as_files_are_read(vgg16_weights, photo_files):
  from skimage import data

  from_file = jaxviz.probe_photo(photo_files["camera_grey.png"], 2, weights=vgg16_weights)
  from_array = jaxviz.probe_photo(data.camera(), 2, weights=vgg16_weights)
  np.testing.assert_array_equal(from_array.means, from_file.means)


# 5. The compilation cache: at most one line, never a broken run or a partial entry.

def probe_command(photo, weights):
  return ["probe", photo, "--layer", "2", "--no-renders", "--weights", weights]


def make_read_only(folder: Path) -> None:
  """Read-only even for root (CI runs as root, which ignores permission bits)."""
  if os.geteuid() != 0:
    folder.chmod(0o555)
  elif subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
    pytest.skip("chattr +i is not supported here; root cannot be denied a write otherwise")


@pytest.mark.parametrize("fault", ["read-only", "a file", "full disk"])
def test_an_unusable_compilation_cache_is_one_line_and_the_run_goes_on(
    tmp_path, fault, photo_files, vgg16_safetensors):
  cache = tmp_path / "cache"
  (cache / "xla").mkdir(parents=True)
  command = probe_command(photo_files["chelsea.jpg"], vgg16_safetensors)
  env = {"JAXVIZ_CACHE_DIR": str(cache)}
  if fault == "a file":
    (cache / "xla").rmdir()
    (cache / "xla").write_text("not a folder")
  elif fault == "read-only":
    make_read_only(cache / "xla")
  try:
    if fault == "full disk":  # writes over 512 KB fail, as on a full disk
      shell = " ".join(f"'{part}'" for part in [sys.executable, "-m", "jaxviz.cli", *map(
          str, command)])
      result = subprocess.run(["sh", "-c", f"trap '' XFSZ; ulimit -f 1024; exec {shell}"],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, **env})
    else:
      result = cli_subprocess(*command, env=env)
  finally:
    if fault == "read-only" and os.geteuid() == 0:
      subprocess.run(["chattr", "-i", str(cache / "xla")])
  assert result.returncode == 0, result.stderr
  assert "rank" in result.stdout
  warnings = [line for line in result.stderr.splitlines() if "cache" in line]
  assert len(warnings) == 1 and warnings[0].startswith("warning: compilation cache off"), \
      result.stderr
  if (cache / "xla").is_dir():
    assert not list((cache / "xla").glob("*-cache"))


def test_a_partial_cache_entry_is_removed_before_the_cache_is_used(tmp_path, photo_files,
                                                                   vgg16_safetensors):
  cache = tmp_path / "cache"
  command = probe_command(photo_files["chelsea.jpg"], vgg16_safetensors)
  env = {"JAXVIZ_CACHE_DIR": str(cache)}
  assert cli_subprocess(*command, env=env).returncode == 0
  entries = sorted((cache / "xla").glob("*-cache"))
  assert entries
  # What a write cut short leaves: part of an entry and no access-time file.
  for entry in entries:
    entry.write_bytes(entry.read_bytes()[: len(entry.read_bytes()) // 2])
    entry.with_name(entry.name.replace("-cache", "-atime")).unlink()
  entries[0].write_bytes(b"")
  result = cli_subprocess(*command, env=env)
  assert result.returncode == 0 and "cache" not in result.stderr, result.stderr
  for entry in entries:
    assert entry.is_file() and entry.with_name(entry.name.replace("-cache", "-atime")).is_file()
  assert all(jax_can_read(entry) for entry in entries)


def jax_can_read(entry: Path) -> bool:
  from jax._src import compilation_cache

  compilation_cache.decompress_executable(entry.read_bytes())
  return True


# 6. Concurrency: one render at a time into a render directory.

def test_a_second_render_into_a_directory_in_use_is_refused(tmp_path):
  out = tmp_path / "o"
  out.mkdir()
  args = ["render", "--layer", "10", "--maps", "0", "--weights", "random", "--out", out, *TINY]
  with store.exclusive(out / ".render.json.lock", out):  # as a running render holds it
    line = error_line(run_cli(*args, "--recipe", "seed", expect_exit=1))
  assert "is being rendered into by another jaxviz process" in line
  assert not list(out.glob("*.png"))
  run_cli(*args)
  assert (out / "10_0.png").is_file() and not (out / ".render.json.lock").exists()

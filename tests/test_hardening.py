"""Bad input and faults, by family: one `error:` line, a non-zero exit, no traceback,
valid JSON whenever --json was asked, no partial or black outputs, finished work kept.
"""

from __future__ import annotations

import copy
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch
import torchvision
from PIL import Image

from jaxviz import fileio

from conftest import (assert_names_all, assert_one_clean_error, cli_subprocess, error_line,
                      png_claiming_size, run_cli, save_pth, strict_json)

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]


# 1. Non-finite numbers are bad input.

def test_non_finite_weights_are_refused_naming_file_and_tensor(tmp_path, vgg16_safetensors,
                                                              torch_vgg16, photo_files):
  with safetensors.safe_open(str(vgg16_safetensors), framework="numpy") as handle:
    metadata = handle.metadata()
    flat = {key: handle.get_tensor(key) for key in handle.keys()}
  flat["conv3_1.kernel"][0, 0, 0, 5] = np.nan
  broken = tmp_path / "nan.safetensors"
  safetensors.numpy.save_file(flat, str(broken), metadata=metadata)
  line = error_line(run_cli("probe", photo_files["chelsea.jpg"], "--layer", "10", "--weights",
                            broken, expect_exit=1))
  assert_names_all(line, "nan.safetensors", "conv3_1.kernel", "non-finite")

  model = copy.deepcopy(torch_vgg16)
  with torch.no_grad():
    model.features[10].weight[0, 0, 0, 0] = float("inf")
  pth = save_pth(model, tmp_path / "inf.pth")
  line = error_line(run_cli("classify", photo_files["chelsea.jpg"], "--weights", pth,
                            expect_exit=1))
  assert_names_all(line, "inf.pth", "features.10.weight", "non-finite")
  out = tmp_path / "converted.safetensors"
  assert "features.10.weight" in error_line(run_cli("convert", pth, "--out", out, expect_exit=1))
  assert not out.exists()


@pytest.mark.parametrize("option,value,needle", [
    ("--lr", "nan", "--lr"), ("--lr", "inf", "--lr"), ("--weight-decay", "nan", "--weight-decay"),
    ("--weight-decay", "-1", "--weight-decay"), ("--upscale", "inf", "--upscale"),
    ("--upscale", "1e308", "sides above"), ("--upscale", "nan", "--upscale"),
    ("--scales", "100000", "--scales"), ("--size0", "100000", "sides above"),
])
def test_non_finite_and_out_of_range_options_are_one_line(tmp_path, option, value, needle):
  out = tmp_path / "o"
  result = run_cli("render", "--layer", "10", "--maps", "0", "--weights", "random", "--out", out,
                   *TINY, option, value, expect_exit=1)
  assert needle in error_line(result)
  assert not list(out.glob("*.png"))


@pytest.fixture(scope="module")
def overflowing_weights(tmp_path_factory, torch_vgg16) -> Path:
  """Finite weights whose conv3_1 map 3 overflows float32: its objective becomes inf/NaN.
  (conv2_2 x 1e4 makes conv3_1's inputs ~100, so 1e38-sized weights overflow.)"""
  model = copy.deepcopy(torch_vgg16)
  with torch.no_grad():
    model.features[7].weight *= 1e4
    model.features[10].weight[3] *= 1e38 / model.features[10].weight[3].abs().max()
  return save_pth(model, tmp_path_factory.mktemp("overflow") / "overflow.pth")


def test_a_map_whose_objective_stops_being_finite_fails_alone(tmp_path, overflowing_weights):
  out = tmp_path / "o"
  result = cli_subprocess("render", "--layer", "10", "--maps", "3,5", "--weights",
                          overflowing_weights, "--out", out, "--json", *TINY)
  line = assert_one_clean_error(result)
  assert_names_all(line, "1 map failed", "map 3", "objective became")
  record = strict_json(result.stdout)  # the record, still valid JSON
  assert set(record["failed"]) == {"3"} and set(record["files"]) == {"5"}
  assert (out / "10_5.png").is_file() and not (out / "10_3.png").exists()
  assert record == strict_json((out / "render.json").read_text())
  # Rerunning retries only the failed map, and fails the same way (in-process: run_cli
  # checks for one clean error line too).
  again = run_cli("render", "--layer", "10", "--maps", "3,5", "--weights", overflowing_weights,
                  "--out", out, *TINY, expect_exit=1)
  assert "1 map already rendered" in again.output
  assert "map 3" in error_line(again)


def test_json_is_valid_even_when_a_command_fails(photo_files, overflowing_weights):
  result = cli_subprocess("probe", photo_files["chelsea.jpg"], "--layer", "10", "--weights",
                          overflowing_weights, "--json")
  line = assert_one_clean_error(result)
  assert "non-finite activations" in line
  assert strict_json(result.stdout) == {"error": line[len("error: "):]}
  bad_layer = cli_subprocess("layers", "--side", "0", "--json")
  assert "error" in strict_json(bad_layer.stdout)


def test_json_text_never_writes_nan_tokens():
  text = fileio.json_text({"a": [1.0, float("nan"), float("inf")], "b": {"c": -float("inf")}})
  assert strict_json(text) == {"a": [1.0, None, None], "b": {"c": None}}


# 2. Hostile or huge images.

@pytest.mark.parametrize("side", [10_000, 100_000])  # above PIL's warning and error limits
def test_a_decompression_bomb_is_refused_by_name(tmp_path, side):
  bomb = png_claiming_size(tmp_path / "bomb.png", side, side)
  line = error_line(run_cli("probe", bomb, "--layer", "24", "--weights", "random",
                            expect_exit=1))
  assert_names_all(line, "image too large", "bomb.png")


def test_a_folder_skips_a_bomb_and_goes_on(tmp_path, photo_files):
  folder = tmp_path / "photos"
  folder.mkdir()
  png_claiming_size(folder / "bomb.png", 100_000, 100_000)
  Image.open(photo_files["chelsea.jpg"]).save(folder / "cat.png")
  report = strict_json(run_cli("top-images", folder, "--layer", "10", "--map", "1",
                               "--weights", "random", "--json").stdout)
  assert report["skipped"] == [str(folder / "bomb.png")]
  assert [row["image"] for row in report["top"]] == [str(folder / "cat.png")]


# 3. Environmental faults.

def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path):
  """A write that fails mid-render (a file-size limit stands in for a full disk: both
  are an OSError from the write): one line, no temporary files, and a rerun with room
  finishes the same images as an uninterrupted render."""
  args = ["render", "--layer", "10", "--maps", "0:4", "--batch", "1", "--weights", "random",
          "--size0", "32", "--scales", "1", "--steps", "3"]
  reference = tmp_path / "reference"
  # Warms the shared cache (random weights, programs): the limited run writes only renders.
  assert cli_subprocess(*args, "--out", reference).returncode == 0

  out = tmp_path / "full"
  # Files of at most 2 x 512 bytes; SIGXFSZ ignored so that a write fails instead of
  # killing the process (an ignored signal stays ignored across exec).
  command = " ".join(shlex.quote(str(a)) for a in [sys.executable, "-m", "jaxviz.cli", *args,
                                                    "--out", out])
  limited = subprocess.run(["sh", "-c", f"trap '' XFSZ; ulimit -f 2; exec {command}"],
                           capture_output=True, text=True, timeout=300)
  line = assert_one_clean_error(limited)
  assert_names_all(line, "cannot write", str(out))
  assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
  assert cli_subprocess(*args, "--out", out).returncode == 0
  for name in (f"10_{m}.png" for m in range(4)):
    np.testing.assert_array_equal(np.asarray(Image.open(out / name)),
                                  np.asarray(Image.open(reference / name)))


def test_probe_reuses_renders_without_writing_to_their_folder(tmp_path, photo_files, monkeypatch):
  renders = tmp_path / "renders"
  args = ["probe", photo_files["astronaut.png"], "--layer", "10", "--top", "3", "--weights",
          "random", "--renders", renders, *TINY]
  run_cli(*args, "--out", tmp_path / "first.png")
  real_atomic_write, real_ensure = fileio.atomic_write, fileio.ensure_writable_dir

  def read_only(path, *rest):
    if Path(path).resolve().is_relative_to(renders.resolve()):
      raise AssertionError(f"wrote into the read-only renders folder: {path}")

  monkeypatch.setattr(fileio, "atomic_write",
                      lambda path: read_only(path) or real_atomic_write(path))
  monkeypatch.setattr(fileio, "ensure_writable_dir",
                      lambda path: read_only(path) or real_ensure(path))
  run_cli(*args, "--out", tmp_path / "second.png")
  assert (tmp_path / "second.png").is_file()


def test_converted_weights_read_like_any_other_output(tmp_path, vgg16_pth):
  out = tmp_path / "vgg16.safetensors"
  run_cli("convert", vgg16_pth, "--out", out)
  png = tmp_path / "x.png"
  fileio.write_png(png, np.zeros((2, 2, 3)))
  assert out.stat().st_mode & 0o777 == png.stat().st_mode & 0o777 == 0o644


# 4. Broken records.

@pytest.mark.parametrize("content", [
    b"{not json", b'{"identity_hash": "abc", "files": {"0": "10_0.png"', b"[]",
    b'{"files": 3}', b"\xff\xfe\x00garbage",
    json.dumps({"identity_hash": "x", "identity": {}, "sides": [32], "files": {},
                "objectives": {}, "runs": []}).encode(),
])
def test_a_broken_record_is_named_and_force_starts_over(tmp_path, content):
  out = tmp_path / "o"
  out.mkdir()
  (out / "render.json").write_bytes(content)
  args = ["render", "--layer", "10", "--maps", "0", "--weights", "random", "--out", out, *TINY]
  line = error_line(run_cli(*args, expect_exit=1))
  assert_names_all(line, "render.json", "--force")
  assert "render.json" in error_line(run_cli("atlas", out, expect_exit=1))
  run_cli(*args, "--force")
  assert strict_json((out / "render.json").read_text())["files"] == {"0": "10_0.png"}


# 5. Interrupts.

# Loaded by every Python the test starts (PYTHONPATH): once the render has saved its
# record with a finished map, the parent waits there until it is interrupted. So the
# signal always arrives mid-work, however fast or busy the machine.
HOLD_AFTER_FIRST_SAVE = """
import time
from jaxviz import store

_save = store.RenderDirectory.save

def save(self):
  _save(self)
  if self.record["files"]:
    while True:
      time.sleep(0.05)

store.RenderDirectory.save = save
"""


def test_ctrl_c_is_one_line_from_the_parent_and_resume_is_exact(tmp_path):
  args = ["render", "--layer", "10", "--maps", "0:6", "--batch", "1", "--weights", "random",
          "--dtype", "float64", "--size0", "32", "--scales", "2", "--steps", "12"]
  whole, interrupted = tmp_path / "whole", tmp_path / "interrupted"
  assert cli_subprocess(*args, "--out", whole).returncode == 0
  hold = tmp_path / "hold"
  hold.mkdir()
  (hold / "sitecustomize.py").write_text(HOLD_AFTER_FIRST_SAVE)
  env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hold), *sys.path])}
  process = subprocess.Popen([sys.executable, "-m", "jaxviz.cli", *args, "--out",
                              str(interrupted)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True, env=env)
  record = interrupted / "render.json"
  deadline = time.time() + 300  # a bound for a hung run, not a timing assumption
  while time.time() < deadline and not (record.is_file() and '"0": "10_0.png"' in
                                        record.read_text()):
    time.sleep(0.05)
  os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
  stdout, stderr = process.communicate(timeout=60)
  result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
  assert assert_one_clean_error(result, code=130) == "error: interrupted"
  resumed = cli_subprocess(*args, "--out", interrupted)
  assert resumed.returncode == 0 and "1 map already rendered" in resumed.stderr
  for name in (f"10_{m}.png" for m in range(6)):
    np.testing.assert_array_equal(np.asarray(Image.open(interrupted / name)),
                                  np.asarray(Image.open(whole / name)))


# 6. Out-of-range integers and mislabelled files.

@pytest.mark.parametrize("args,needle", [
    (["--seed", str(2**64)], "seed must be an integer from 0 to 4294967295"),
    (["--seed", str(2**32)], "seed must be an integer from 0 to 4294967295"),
    (["--seed", "-1"], "seed must be an integer"),
    (["--weights", f"random:{2**70}"], "seed of random weights must be an integer"),
])
def test_seeds_beyond_32_bits_are_refused(tmp_path, args, needle):
  args = ["--weights", "random", *args] if "--weights" not in args else args
  result = run_cli("render", "--layer", "10", "--maps", "0", "--out", tmp_path / "o", *TINY,
                   *args, expect_exit=1)
  assert needle in error_line(result)


def test_a_pickled_model_is_not_a_state_dict(tmp_path, photo_files):
  path = tmp_path / "whole_model.pth"
  torch.save(torchvision.models.vgg11(), path)
  line = error_line(run_cli("classify", photo_files["chelsea.jpg"], "--weights", path,
                            expect_exit=1))
  assert_names_all(line, "whole_model.pth", "not a state dict", "state_dict()")


def test_process_count_zero_is_named(tmp_path):
  line = error_line(run_cli("sweep", "--layer", "10", "--out", tmp_path / "o", "--weights",
                            "random", "--process-count", "0", expect_exit=1))
  assert "--process-count must be at least 1" in line

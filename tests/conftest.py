"""Shared fixtures: a seeded random torchvision VGG16, saved and converted locally.

No test needs the real ImageNet weights (no machine here can download them):
torchvision's own initialisation with a fixed seed stands in, saved as a
`.pth` and run through the same conversion path as the real file. Biases are
zero after torchvision's init, so they are filled with seeded noise to make
a bias mix-up visible.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from typer.testing import CliRunner

import jaxviz_convert.torch_weights as torch_weights
from jaxviz import app as app_lib
from jaxviz import execution
from jaxviz import weights as weights_lib
from jaxviz.optvis import params as params_lib
from jaxviz.optvis import render
from jaxviz.cli import app

TORCH_SEED = 0


def lucent_or_skip(allow_module_level: bool = False) -> None:
  """Skips (the calling test, or module) where torch-lucent is not installed; under
  JAXVIZ_REQUIRE_REFERENCES (.ci/run) fails instead, so that CI never skips it."""
  import importlib.util

  if importlib.util.find_spec("lucent") is not None:
    return
  if os.environ.get("JAXVIZ_REQUIRE_REFERENCES"):
    raise ImportError("torch-lucent is required (JAXVIZ_REQUIRE_REFERENCES is set)")
  pytest.skip("needs torch-lucent (.ci/run installs it)", allow_module_level=allow_module_level)


def pytest_collection_modifyitems(config, items):
  """Tests marked cpu_only skip, each with its reason, where JAX's default backend is
  not the CPU (benchmarks/gpu_check.sh runs the suite on a GPU)."""
  if jax.default_backend() == "cpu":
    return
  for item in items:
    marker = item.get_closest_marker("cpu_only")
    if marker is not None:
      item.add_marker(pytest.mark.skip(reason=f"CPU only: {marker.kwargs.get('reason', '')}"))


def make_torch_vgg(arch: str = "vgg16", seed: int = TORCH_SEED) -> torch.nn.Module:
  torch.manual_seed(seed)
  model = getattr(torchvision.models, arch)(weights=None)
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      if name.endswith("bias"):
        parameter.normal_(0.0, 0.1)
  return model.eval().double()


@pytest.fixture(scope="session")
def torch_vgg16() -> torch.nn.Module:
  """Seeded random VGG16 in float64, so torch is the exact side of each comparison."""
  return make_torch_vgg()


@pytest.fixture(scope="session")
def vgg16_pth(tmp_path_factory, torch_vgg16) -> Path:
  return save_pth(torch_vgg16, tmp_path_factory.mktemp("weights") / "vgg16-random.pth")


@pytest.fixture(scope="session")
def vgg16_safetensors(vgg16_pth) -> Path:
  out = vgg16_pth.with_suffix(".safetensors")
  torch_weights.convert_file(vgg16_pth, out)
  return out


@pytest.fixture(scope="session")
def vgg16_weights(vgg16_safetensors) -> weights_lib.Weights:
  return weights_lib.load_safetensors(vgg16_safetensors)


@pytest.fixture(scope="session")
def shared_jaxviz_cache(tmp_path_factory) -> Path:
  return tmp_path_factory.mktemp("jaxviz-cache")


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch, shared_jaxviz_cache):
  """No test touches the user's caches. The tests share one jaxviz cache (compiled
  programs and random weights, which only save time; `empty_jaxviz_cache` gives a
  test its own); torch's cache is each test's own."""
  monkeypatch.setenv(weights_lib.CACHE_ENV, str(shared_jaxviz_cache))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture
def empty_jaxviz_cache(tmp_path, monkeypatch) -> Path:
  monkeypatch.setenv(weights_lib.CACHE_ENV, str(tmp_path / "jaxviz-cache"))
  return tmp_path / "jaxviz-cache"


@pytest.fixture
def photo_files(tmp_path) -> dict[str, Path]:
  """scikit-image photos written as files in several modes (RGB, grey, RGBA)."""
  from skimage import data

  files = {}
  for name, array, mode in (("astronaut.png", data.astronaut(), "RGB"),
                            ("chelsea.jpg", data.chelsea(), "RGB"),
                            ("camera_grey.png", data.camera(), "L")):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    files[name] = path
  rgba = np.dstack([data.coffee(), np.full(data.coffee().shape[:2], 200, np.uint8)])
  files["coffee_rgba.png"] = tmp_path / "coffee_rgba.png"
  Image.fromarray(rgba, "RGBA").save(files["coffee_rgba.png"])
  return files


def run_cli(*args: str, expect_exit: int = 0):
  """Runs the CLI in-process; on an expected failure checks it is one clean line."""
  result = CliRunner().invoke(app, [str(a) for a in args])
  assert result.exit_code == expect_exit, result.output
  if expect_exit != 0:
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)
    error_lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1, result.output
  return result


def error_line(result) -> str:
  return next(line for line in result.output.splitlines() if line.startswith("error:"))


def relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
  return float(np.abs(ours - reference).max() / np.abs(reference).max())


def assert_names_all(text: str, *needles: str) -> None:
  for needle in needles:
    assert re.search(re.escape(needle), text), f"{needle!r} not in {text!r}"



def start_images(maps, side=32, dtype=jnp.float64, seed=0) -> np.ndarray:
  """The write-up recipe's start images of `maps` (seed `seed`), (N, side, side, 3), RGB,
  to hand the torch reference exactly what the JAX loop starts from."""
  key = jax.random.key(seed)
  with jax.enable_x64(dtype == jnp.float64):
    noise = jax.vmap(lambda unit: params_lib.NormalisedPixels.noise(
        render.map_keys(key, unit)[0], side, 1, dtype)[0])
    return np.asarray(noise(jnp.asarray(maps)))


def render_layer_batch(params, maps, key, schedule, target, *, dtype="float32", **kwargs):
  """One batch of the write-up's recipe for `target`, as the execution layer runs it;
  images (B, S, S, 3) (the group axis of one image dropped)."""
  recipe = app_lib.layer_recipe(target, schedule)
  placed = execution.prepare_params(recipe, target.model, params, dtype)
  result = render.render_batch(recipe, target.model, placed, np.asarray(maps), key,
                               dtype=dtype, **kwargs)
  return dataclasses.replace(result, images=result.images[:, 0])


def save_pth(model, path: Path) -> Path:
  """A torch model's state dict as a float32 `.pth`, as torchvision ships weights."""
  torch.save({key: value.float() for key, value in model.state_dict().items()}, path)
  return path


def strict_json(text: str):
  """json.loads that refuses NaN and Infinity, which are not JSON."""
  def refuse(token):
    raise ValueError(f"not JSON: {token}")
  return json.loads(text, parse_constant=refuse)


def cli_subprocess(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "jaxviz.cli", *map(str, args)],
                        capture_output=True, text=True, timeout=timeout,
                        env={**os.environ, **(env or {})})


def assert_one_clean_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
  assert result.returncode == code, result.stderr
  output = result.stdout + result.stderr
  assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert len(errors) == 1, result.stderr
  return errors[0]


def png_claiming_size(path: Path, width: int, height: int) -> Path:
  """A tiny valid PNG whose header claims width x height (a decompression bomb)."""
  Image.new("RGB", (1, 1)).save(path)
  data = bytearray(path.read_bytes())
  ihdr = data.index(b"IHDR")
  data[ihdr + 4: ihdr + 12] = struct.pack(">II", width, height)
  data[ihdr + 17: ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr: ihdr + 17])))
  path.write_bytes(bytes(data))
  return path

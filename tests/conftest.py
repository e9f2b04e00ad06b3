"""Shared fixtures: a seeded random torchvision VGG16, saved and converted locally.

No test needs the real ImageNet weights (no machine here can download them):
torchvision's own initialisation with a fixed seed stands in, saved as a
`.pth` and run through the same conversion path as the real file. Biases are
zero after torchvision's init, so they are filled with seeded noise to make
a bias mix-up visible.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision
from typer.testing import CliRunner

import convert.torchvision_vgg as torchvision_vgg
from jaxviz import engine
from jaxviz import weights as weights_lib
from jaxviz.cli import app

TORCH_SEED = 0


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
  torchvision_vgg.convert_file(vgg16_pth, out)
  return out


@pytest.fixture(scope="session")
def vgg16_weights(vgg16_safetensors) -> weights_lib.Weights:
  return weights_lib.load_safetensors(vgg16_safetensors)


@pytest.fixture(autouse=True)
def isolated_caches(tmp_path, monkeypatch):
  """Every test gets empty jaxviz and torch caches, so none touches the user's."""
  monkeypatch.setenv(weights_lib.CACHE_ENV, str(tmp_path / "jaxviz-cache"))
  monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


@pytest.fixture
def photo_files(tmp_path) -> dict[str, Path]:
  """scikit-image photos written as files in several modes (RGB, grey, RGBA)."""
  from PIL import Image
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
  """The engine's start noise for `maps` (seed `seed`), to hand the torch reference."""
  with jax.enable_x64(dtype == jnp.float64):
    return np.asarray(engine._batched_start(jax.random.key(seed), jnp.asarray(maps), side,
                                            dtype))


def save_pth(model, path: Path) -> Path:
  """A torch model's state dict as a float32 `.pth`, as torchvision ships weights."""
  torch.save({key: value.float() for key, value in model.state_dict().items()}, path)
  return path

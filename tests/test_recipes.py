"""The lucid and MACO recipes as jaxviz runs them: batch independence, diversity groups,
float32 and float64, the CLI (--recipe, compare, spectrum), records and resume.

Sizes are tiny (24-32 px images, a few steps); parity with lucent and horama
themselves is tests/test_references.py. Tolerance: batch independence <= 1e-5.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz import app, ops
from jaxviz.optvis import params, recipes

from conftest import assert_names_all, error_line, run_cli

LUCID = recipes.Lucid(size0=24, steps=4, input_side=40)


@pytest.fixture(scope="module")
def magnitude() -> np.ndarray:
  """A 32 px MACO magnitude from scikit-image's photos, as `jaxviz spectrum` makes it."""
  from skimage import data

  photos = [data.astronaut(), data.chelsea(), data.coffee()]
  spectra = [np.abs(np.fft.rfft2(np.moveaxis(np.asarray(params.decorrelate(ops.resize_bicubic(
      jax.numpy.asarray(photo / 255.0), 32, 32))), -1, 0))) for photo in photos]
  return np.mean(spectra, axis=0).astype(np.float32)


def maco(magnitude) -> recipes.MacoRecipe:
  return recipes.MacoRecipe(params.Constant(magnitude), size0=32, steps=3, crops=2,
                            crop_side=32)


def test_a_maco_map_does_not_depend_on_its_batch_mates(vgg16_weights, magnitude):
  """In float64: in float32, NAdam's lr 1.0 on the phases grows the rounding of two
  programs (a batch of 3, a batch of 1) to 1e-3 in 3 steps on some CPUs. (lucid's batch
  independence is the last check of the diversity test below.)"""
  settings = maco(magnitude)
  together = jaxviz.render(10, [3, 9, 4], weights=vgg16_weights, schedule=settings, batch=3,
                           dtype="float64")
  alone = jaxviz.render(10, [9], weights=vgg16_weights, schedule=settings, batch=1,
                        dtype="float64")
  np.testing.assert_allclose(together[1], alone[0], rtol=0, atol=1e-12)
  assert np.abs(together[0] - together[2]).max() > 1e-3
  assert np.isfinite(together).all() and 0 <= together.min() and together.max() <= 1


def test_lucid_renders_in_float64(vgg16_weights):
  """(float32 is what the other tests here render; MACO's float64 is above.)"""
  images = jaxviz.render(10, [2], weights=vgg16_weights, schedule=LUCID, dtype="float64",
                         batch=1)
  assert images.shape == (1, LUCID.size0, LUCID.size0, 3)
  assert np.isfinite(images).all() and 0 <= images.min() and images.max() <= 1


def test_a_diversity_group_differs_from_independent_renders_and_from_other_groups(
    vgg16_weights):
  # float64: in float32 XLA's kernels for a batch of 2 round differently from 1, and
  # the diversity term's large gradients (x100) let Adam carry that to ~1.5e-5.
  batched = jaxviz.render(10, [7, 5], weights=vgg16_weights, schedule=LUCID, diversity=2,
                          batch=2, dtype="float64")
  assert batched.shape == (2, 2, 24, 24, 3)
  # Without the diversity term the same group would be one render drawn twice over.
  plain = jaxviz.render(10, [5], weights=vgg16_weights, schedule=LUCID, batch=1,
                        dtype="float64")[0]
  assert np.abs(batched[1, 0] - plain).max() > 1e-3
  assert np.abs(batched[1, 0] - batched[1, 1]).max() > 1e-3
  # Groups are independent of each other in a batch: the batch of 2 runs vmapped (the
  # random scale's switch as a select over every branch), the batch of 1 unbatched.
  group = jaxviz.render(10, [5], weights=vgg16_weights, schedule=LUCID, diversity=2, batch=1,
                        dtype="float64")
  np.testing.assert_allclose(batched[1], group[0], rtol=0, atol=1e-5)


def test_spectrum_command_and_maco_from_the_cli(tmp_path, photo_files):
  folder = tmp_path / "photos"
  folder.mkdir()
  for path in photo_files.values():
    (folder / path.name).write_bytes(path.read_bytes())
  spectrum = tmp_path / "spectrum.npy"
  result = run_cli("spectrum", folder, "--size", "32", "--out", spectrum)
  assert "from 4 photos" in result.output
  magnitude = np.load(spectrum)
  assert magnitude.shape == (3, 32, 17) and magnitude.dtype == np.float32
  assert np.isfinite(magnitude).all() and magnitude.min() >= 0
  expected, used = app.photo_spectrum(sorted(folder.iterdir()), 32)
  np.testing.assert_array_equal(magnitude, expected)

  out = tmp_path / "maco"
  run_cli("render", "--layer", "10", "--maps", "1", "--recipe", "maco", "--spectrum", spectrum,
          "--size0", "32", "--steps", "2", "--weights", "random", "--out", out)
  record = json.loads((out / "render.json").read_text())
  assert record["identity"]["recipe"]["name"] == "maco"
  assert record["identity"]["schedule"]["spectrum"] == params.Constant(magnitude).digest
  assert Image.open(out / "10_1.png").size == (32, 32)
  line = error_line(run_cli("render", "--layer", "10", "--maps", "1", "--recipe", "maco",
                            "--spectrum", spectrum, "--size0", "64", "--weights", "random",
                            "--out", tmp_path / "m2", expect_exit=1))
  assert_names_all(line, "--spectrum", "(3, 32, 17)", "64 px", "jaxviz spectrum")


def test_recipe_is_part_of_a_render_directory(tmp_path):
  out = tmp_path / "o"
  base = ["render", "--layer", "2", "--maps", "0", "--weights", "random", "--out", out,
          "--size0", "24", "--steps", "2"]
  run_cli(*base, "--recipe", "lucid")
  record = json.loads((out / "render.json").read_text())
  assert record["identity"]["recipe"]["name"] == "lucid"
  assert record["identity"]["recipe"]["transforms"]["compose"][0] == {
      "pad": {"width": 12, "value": 0.5}}
  assert "1 map already rendered" in run_cli(*base, "--recipe", "lucid").output
  line = error_line(run_cli(*base, "--recipe", "seed", "--scales", "1", expect_exit=1))
  assert_names_all(line, "other settings", "recipe", "--force")
  run_cli("atlas", out)
  assert "recipe lucid" in (out / "index.html").read_text()


@pytest.mark.parametrize("args,needles", [
    (["--recipe", "lucid", "--blur", "3"], ["--blur", "not a setting of --recipe lucid"]),
    (["--recipe", "seed", "--decay-power", "2"], ["--decay-power", "--recipe seed"]),
    (["--recipe", "maco"], ["--spectrum", "is needed", "jaxviz spectrum"]),
    (["--recipe", "deepdream"], ["--recipe", "seed, lucid, maco"]),
    (["--recipe", "lucid", "--lr", "nan"], ["--lr", "finite"]),
    (["--diversity", "0"], ["--diversity", "1..64"]),
])
def test_recipe_settings_are_checked_in_one_place(tmp_path, args, needles):
  line = error_line(run_cli("render", "--layer", "10", "--maps", "0", "--weights", "random",
                            "--out", tmp_path / "o", *args, expect_exit=1))
  assert_names_all(line, *needles)


def test_compare_draws_one_row_per_map_one_column_per_recipe(tmp_path, monkeypatch):
  from jaxviz import figures

  drawn = {}
  real = figures.compare_figure
  monkeypatch.setattr(figures, "compare_figure",
                      lambda *args, **kwargs: drawn.setdefault("figure", real(*args, **kwargs)))
  out = tmp_path / "compare.png"
  run_cli("compare", "--layer", "2", "--maps", "3,1", "--recipes", "seed,lucid", "--weights",
          "random", "--size0", "24", "--steps", "2", "--out", out)
  assert out.is_file()
  titles = [axes.get_title() for axes in drawn["figure"].axes]
  assert [title.split(":")[0] for title in titles] == ["seed", "lucid", "seed", "lucid"]
  assert all("fmap 3" in title for title in titles[:2]) and "fmap 1" in titles[2]
  assert all("objective" in title for title in titles)
  assert "RANDOM" in drawn["figure"]._suptitle.get_text()

"""`jaxviz.figure`, `show` and `save` (#21): what the Python API returns, drawn as the CLI
draws it (panels, titles, footnotes), a PNG written atomically, and wrong input as one
JaxvizError line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

import jaxviz
from jaxviz import figures, plotting
from jaxviz.api import RandomWeightsWarning
from jaxviz.app import commands
from jaxviz.errors import JaxvizError

TINY = jaxviz.Schedule(size0=16, scales=1, steps=2)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def images(*shape: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).uniform(size=shape).astype(np.float32)


def panel_titles(figure) -> list[str]:
  """The titles of the panels that show an image, in drawing order."""
  return [axes.get_title() for axes in figure.axes if axes.images]


@pytest.fixture(scope="module")
def weights():
  return jaxviz.load_weights("random:2")


@pytest.fixture(scope="module")
def probed(weights):
  photo = np.random.default_rng(1).uniform(size=(40, 40, 3))
  with pytest.warns(RandomWeightsWarning):
    return jaxviz.probe_photo(photo, "conv2_1", maps=[3], top=3, weights=weights)


def test_images_draw_as_the_render_grid(tmp_path):
  figure = jaxviz.figure(images(4, 12, 12, 3), maps=[271, 15, 0, 7], title="conv5_1")
  assert isinstance(figure.canvas, FigureCanvasAgg)  # no display, no pyplot
  assert panel_titles(figure) == ["fmap 271", "fmap 15", "fmap 0", "fmap 7"]
  assert figure.get_suptitle() == "conv5_1"
  # The same grid as `jaxviz render`'s grid.png (3 columns: two rows of panels).
  grid = figures.render_grid(list(images(4, 12, 12, 3)), [271, 15, 0, 7], None,
                                    suptitle="conv5_1")
  assert ([axes.get_position().bounds for axes in figure.axes]
          == [axes.get_position().bounds for axes in grid.axes])
  assert len({round(axes.get_position().y0, 3) for axes in figure.axes}) == 2

  assert panel_titles(jaxviz.figure(images(2, 8, 8, 3))) == ["image 0", "image 1"]
  assert panel_titles(jaxviz.figure(images(2, 8, 8, 3), titles=["a", "b"])) == ["a", "b"]
  assert panel_titles(jaxviz.figure(images(8, 8, 3))) == ["image 0"]  # one image
  as_bytes = (images(1, 8, 8, 3) * 255).astype(np.uint8)  # uint8, as photos are read
  assert jaxviz.figure(as_bytes).axes[0].images[0].get_array().max() <= 1


def test_a_diversity_group_is_one_panel_of_its_images_side_by_side():
  figure = jaxviz.figure(images(2, 3, 10, 10, 3), maps=[5, 6])  # (N, K, S, S, 3)
  assert panel_titles(figure) == ["fmap 5", "fmap 6"]
  assert [axes.images[0].get_array().shape for axes in figure.axes] == [(10, 30, 3)] * 2


def test_compare_draws_a_row_per_map_and_a_column_per_recipe(weights):
  target = jaxviz.resolve_target("conv2_1", "vgg16")
  recipes = ("seed", "lucid")
  outcome = commands.CompareOutcome(
      images={r: {3: images(8, 8, 3), 9: images(8, 8, 3, seed=1)} for r in recipes},
      objectives={"seed": {3: 0.5, 9: 0.25}, "lucid": {3: 0.125, 9: 2.0}}, maps=[3, 9],
      weights=weights, target=target, figure=None)
  figure = jaxviz.figure(outcome)
  assert panel_titles(figure) == ["seed: fmap 3\nobjective 0.5", "lucid: fmap 3\nobjective 0.125",
                                  "seed: fmap 9\nobjective 0.25", "lucid: fmap 9\nobjective 2"]
  assert figure.get_suptitle() == commands.compare_title(weights, target)
  assert "RANDOM" in figure.get_suptitle()
  rows = sorted({round(axes.get_position().y0, 3) for axes in figure.axes}, reverse=True)
  columns = sorted({round(axes.get_position().x0, 3) for axes in figure.axes})
  assert len(rows) == 2 and len(columns) == 2


def test_a_probe_draws_the_photo_the_means_and_the_renders_given(probed):
  top = [m for _, m, _ in probed.top]
  bare = jaxviz.figure(probed)
  assert [axes.get_title() for axes in bare.axes] == [
      "Image", "Top 3 Feature Maps from conv2_1 (layer 5, post-ReLU)"]
  assert "RANDOM" in bare.get_supxlabel() and "renders" not in bare.get_supxlabel()
  assert "map 3: rank" in " ".join(text.get_text() for text in bare.axes[1].texts)

  # Renders of the top maps only are drawn, in the ranking's order.
  renders = {m: images(8, 8, 3, seed=m) for m in [*top, 999]}
  full = jaxviz.figure(probed, renders=renders)
  assert panel_titles(full) == ["Image"] + [f"fmap {m}" for m in top]


def test_a_probe_with_its_figure_is_drawn_with_the_renders_it_made(tmp_path, weights):
  photo = np.random.default_rng(2).uniform(size=(40, 40, 3))
  with pytest.warns(RandomWeightsWarning):
    outcome = jaxviz.probe_photo(photo, "conv2_1", top=1, weights=weights,
                                 figure=tmp_path / "probe.png", renders=tmp_path / "renders",
                                 schedule=TINY)
  figure = jaxviz.figure(outcome)
  assert panel_titles(figure) == ["Image", f"fmap {outcome.top[0][1]}"]
  assert figure.get_supxlabel().endswith("; renders: recipe seed")


def test_save_writes_a_png_atomically(tmp_path, monkeypatch):
  path = jaxviz.save(images(2, 8, 8, 3), tmp_path / "new" / "grid.png", maps=[1, 2], dpi=50)
  assert path == tmp_path / "new" / "grid.png"
  assert path.read_bytes().startswith(PNG_SIGNATURE)
  with Image.open(path) as image:
    assert image.size == (int(2 * figures.CELL_INCHES * 50),
                          int(figures.CELL_INCHES * 50))
  assert os.listdir(path.parent) == ["grid.png"]  # no temporary file left beside it

  def full_disk(figure, target, **options):
    Path(target).write_bytes(b"half a PNG")
    raise OSError(28, "No space left on device")

  before = path.read_bytes()
  monkeypatch.setattr(Figure, "savefig", full_disk)
  with pytest.raises(JaxvizError, match="^cannot write .*grid.png: No space left on device$"):
    jaxviz.save(images(2, 8, 8, 3), path)
  assert path.read_bytes() == before and os.listdir(path.parent) == ["grid.png"]


def test_show_returns_the_figure_outside_a_notebook_and_displays_a_png_in_one(monkeypatch):
  drawn = jaxviz.show(images(1, 8, 8, 3), maps=[4])
  assert panel_titles(drawn) == ["fmap 4"]

  import IPython.display

  shown = []
  monkeypatch.setattr(plotting, "_in_notebook", lambda: True)
  monkeypatch.setattr(IPython.display, "display", shown.append)
  assert jaxviz.show(images(1, 8, 8, 3), maps=[4]) is None  # nothing for the cell to echo
  assert len(shown) == 1 and shown[0].data.startswith(PNG_SIGNATURE)


def test_jaxviz_show_stays_the_function():
  # A submodule named `show` would replace the function on the package once imported.
  assert {"figure", "show", "save"} <= set(dir(jaxviz))
  for _ in range(2):
    assert callable(jaxviz.show) and callable(jaxviz.save) and callable(jaxviz.figure)


def test_drawing_images_needs_no_display_pyplot_or_jax(tmp_path):
  code = ("import sys, numpy as np, jaxviz\n"
          "jaxviz.save(np.zeros((2, 8, 8, 3)), sys.argv[1], maps=[0, 1])\n"
          "print(sorted(m for m in ('matplotlib.pyplot', 'jax') if m in sys.modules))\n")
  env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
  result = subprocess.run([sys.executable, "-c", code, str(tmp_path / "g.png")], env=env,
                          capture_output=True, text=True, check=True)
  assert result.stdout.strip() == "[]"
  assert (tmp_path / "g.png").read_bytes().startswith(PNG_SIGNATURE)


NAN = images(2, 8, 8, 3)
NAN[1, 2, 3, 0] = np.nan


@pytest.mark.parametrize("result, options, message", [
    (NAN, {}, "images: 1 pixel values are not finite"),
    (np.full((1, 8, 8, 3), np.inf), {}, "images: 192 pixel values are not finite"),
    (np.zeros((2, 8, 8)), {}, r"images: expected \(S, S, 3\) or \(N, S, S, 3\) or "),
    (np.zeros((2, 8, 8, 4)), {}, "images: expected .* got shape"),
    (np.zeros((0, 8, 8, 3)), {}, "images: expected .* got shape"),
    (np.full((1, 8, 8, 3), 255.0), {}, r"images: expected pixel values in \[0, 1\], got 255"),
    (np.zeros((1, 8, 8, 3), np.int64), {}, "images: expected floats in .* got dtype int64"),
    ([np.zeros((8, 8, 3)), np.zeros((9, 9, 3))], {}, "images: expected an array of images"),
    ({"images": 1}, {}, "jaxviz.figure draws images .* got dict"),
    ("grid.png", {}, "jaxviz.figure draws images .* got str"),
    (np.zeros((2, 8, 8, 3)), {"maps": [1]}, r"maps: expected one per image \(2\)"),
    (np.zeros((2, 8, 8, 3)), {"maps": ["a", "b"]}, "maps: expected map indices"),
    (np.zeros((2, 8, 8, 3)), {"maps": [1, 2], "titles": ["a", "b"]}, "titles: give maps"),
    (np.zeros((2, 8, 8, 3)), {"renders": {}}, "renders: only for a probe"),
])
def test_wrong_input_is_one_jaxviz_error_line(result, options, message):
  with pytest.raises(JaxvizError, match=f"^{message}") as raised:
    jaxviz.figure(result, **options)
  assert "\n" not in str(raised.value)


def test_wrong_input_for_an_outcome_is_one_jaxviz_error_line(probed, tmp_path):
  cases = [
      ({"maps": [1]}, "maps: only for images"),
      ({"title": "x"}, "title: only for images"),
      ({"renders": [np.zeros((8, 8, 3))]}, "renders: expected {map: image}, got list"),
      ({"renders": {"a": np.zeros((8, 8, 3))}}, "renders: expected map indices as keys"),
      ({"renders": {3: np.zeros((2, 8, 8, 3))}}, r"renders\[3\]: expected \(S, S, 3\) RGB"),
      ({"renders": {3: np.full((8, 8, 3), np.nan)}}, r"renders\[3\]: 192 pixel values"),
  ]
  for options, message in cases:
    with pytest.raises(JaxvizError, match=f"^{message}") as raised:
      jaxviz.figure(probed, **options)
    assert "\n" not in str(raised.value)
  with pytest.raises(JaxvizError, match=r"^path: jaxviz.save writes a PNG; .* got '.*\.jpg'$"):
    jaxviz.save(probed, tmp_path / "probe.jpg")
  assert not list(tmp_path.iterdir())

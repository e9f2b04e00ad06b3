"""The probe (SPEC §3) and top-images against PyTorch, the figure's structure, bad input.

The torch side reads layers the write-up's way (`torch_reference.channel_means`:
a hook on an unmodified torchvision VGG16, post-ReLU through its in-place ReLU).
Tolerance: JAX float32 means vs torch float64 within 1e-5 of the largest |mean|,
and the same top-15 order.
"""

from __future__ import annotations

import json
import shutil

import matplotlib.colors
import numpy as np
import pytest

from jaxviz import figures, fileio
from jaxviz import probe as probe_lib
from jaxviz.vgg import resolve_target

from conftest import assert_names_all, error_line, relative_error, run_cli
from torch_reference import channel_means as torch_means


@pytest.mark.parametrize("layer_index", [10, 24, 28])
@pytest.mark.parametrize("photo_name", ["astronaut.png", "coffee_rgba.png", "chelsea.jpg"])
def test_probe_means_and_top15_equal_the_write_ups_hooked_means(layer_index, photo_name,
                                                                photo_files, vgg16_weights,
                                                                torch_vgg16):
  photo = fileio.read_image(photo_files[photo_name])
  result = probe_lib.probe(vgg16_weights, photo, resolve_target(layer_index), top=15, maps=[7])
  expected = torch_means(torch_vgg16, photo, layer_index)
  assert expected.min() == 0  # post-ReLU: some channel is zero everywhere, as in the write-up
  assert result.means.min() >= 0
  assert relative_error(result.means, expected) <= 1e-5
  expected_order = list(np.argsort(-expected, kind="stable")[:15])
  assert [m for _, m, _ in result.top] == expected_order
  assert [r for r, _, _ in result.top] == list(range(1, 16))
  rank, mean = result.asked[7]
  assert rank == 1 + int(np.sum(expected > expected[7]))
  assert mean == pytest.approx(expected[7], abs=1e-5 * np.abs(expected).max())


def test_pre_relu_probe_equals_the_raw_conv_means(photo_files, vgg16_weights, torch_vgg16):
  photo = fileio.read_image(photo_files["chelsea.jpg"])
  result = probe_lib.probe(vgg16_weights, photo, resolve_target(24, pre_relu=True))
  expected = torch_means(torch_vgg16, photo, 24, pre_relu=True)
  assert expected.min() < 0 and relative_error(result.means, expected) <= 1e-5
  post = probe_lib.probe(vgg16_weights, photo, resolve_target(24))
  assert relative_error(post.means, expected) > 0.1  # the two readings really differ


def test_probe_cli_json_and_table(photo_files, vgg16_safetensors):
  photo = photo_files["chelsea.jpg"]
  args = ["probe", photo, "--layer", "conv3_1", "--weights", vgg16_safetensors, "--top", "5",
          "--map", "3", "--map", "200"]
  report = json.loads(run_cli(*args, "--json").stdout)
  assert report["image"] == str(photo) and report["layer"] == 10
  assert report["layer_name"] == "conv3_1" and len(report["means"]) == 256
  assert report["pre_relu"] is False and report["reads"] == "relu3_1"
  assert min(report["means"]) >= 0
  pre = json.loads(run_cli(*args, "--json", "--pre-relu").stdout)
  assert pre["pre_relu"] is True and pre["reads"] == "conv3_1" and min(pre["means"]) < 0
  assert [row["rank"] for row in report["top"]] == [1, 2, 3, 4, 5]
  means = np.array(report["means"])
  assert [row["map"] for row in report["top"]] == list(np.argsort(-means, kind="stable")[:5])
  assert set(report["maps"]) == {"3", "200"}
  assert report["maps"]["3"]["mean"] == pytest.approx(means[3])
  table = run_cli(*args).stdout
  assert f"map 3: rank {report['maps']['3']['rank']} of 256" in table


def test_probe_figure_structure(tmp_path):
  means = np.random.default_rng(0).normal(size=64)
  top = list(np.argsort(-means)[:6])
  renders = {m: np.full((20, 20, 3), 0.5) for m in top}
  figure = figures.probe_figure(np.zeros((224, 224, 3)), means, top, "Conv layer24", renders,
                                tmp_path / "fig.png")
  assert (tmp_path / "fig.png").is_file()
  photo_axes, plot, *render_axes = figure.axes
  assert photo_axes.get_title() == "Image"
  assert plot.get_ylabel() == "mean activation"
  assert plot.get_title() == "Top 6 Feature Maps from Conv layer24"
  line, *vlines = plot.get_lines()
  np.testing.assert_allclose(line.get_ydata(), np.clip(means, 0, None))
  assert sorted(v.get_xdata()[0] for v in vlines) == sorted(top)
  for v in vlines:
    assert matplotlib.colors.same_color(v.get_color(), "red")
    assert v.get_linestyle() == "--" and v.get_alpha() == pytest.approx(0.4)
  assert [a.get_title() for a in render_axes] == [f"fmap {m}" for m in top]
  # Renders below the top row, three to a row; the plot spans columns 2-3.
  figure.canvas.draw()
  tops = [round(a.get_position().y1, 3) for a in render_axes]
  assert tops[0] == tops[1] == tops[2] > tops[3] == tops[4] == tops[5]
  assert tops[0] < plot.get_position().y0
  assert plot.get_subplotspec().colspan == range(1, 3)

  bare = figures.probe_figure(np.zeros((8, 8, 3)), means, top, "x", None, tmp_path / "b.png")
  assert len(bare.axes) == 2


def test_probe_cli_draws_figure_with_renders(tmp_path, photo_files):
  out = tmp_path / "probe.png"
  renders = tmp_path / "renders"
  result = run_cli("probe", photo_files["astronaut.png"], "--layer", "10", "--top", "4",
                   "--weights", "random", "--out", out, "--renders", renders,
                   "--size0", "32", "--scales", "2", "--steps", "2")
  assert out.is_file() and f"figure: {out}" in result.stdout
  record = json.loads((renders / "render.json").read_text())
  assert len(record["files"]) == 4
  # The figure's renders are reused the second time, not rendered again.
  again = run_cli("probe", photo_files["astronaut.png"], "--layer", "10", "--top", "4",
                  "--weights", "random", "--out", out, "--renders", renders,
                  "--size0", "32", "--scales", "2", "--steps", "2")
  assert "4 maps already rendered" in again.output


@pytest.mark.parametrize("make,needles", [
    (lambda p: None, ["image not found", "photo.jpg"]),
    (lambda p: p.write_bytes(b""), ["not an image", "photo.jpg"]),
    (lambda p: p.write_text("text"), ["not an image", "photo.jpg"]),
])
def test_probe_bad_photo_is_one_line(tmp_path, make, needles):
  path = tmp_path / "photo.jpg"
  make(path)
  line = error_line(run_cli("probe", path, "--layer", "24", "--weights", "random",
                            expect_exit=1))
  assert_names_all(line, *needles)


def test_probe_bad_layer_and_map_are_one_line(photo_files):
  photo = photo_files["astronaut.png"]
  line = error_line(run_cli("probe", photo, "--layer", "40", "--weights", "random",
                            expect_exit=1))
  assert_names_all(line, "unknown layer '40'", "24 (conv5_1)")
  line = error_line(run_cli("probe", photo, "--layer", "24", "--map", "600", "--weights",
                            "random", expect_exit=1))
  assert_names_all(line, "map 600", "512 maps")
  line = error_line(run_cli("probe", photo, "--layer", "7", "--top", "129", "--weights",
                            "random", expect_exit=1))
  assert_names_all(line, "--top", "128")


@pytest.fixture
def photo_folder(tmp_path, photo_files):
  folder = tmp_path / "photos"
  (folder / "nested").mkdir(parents=True)
  for index, path in enumerate(photo_files.values()):
    shutil.copy(path, (folder / "nested" if index % 2 else folder) / path.name)
  (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
  (folder / "notes.txt").write_text("ignored: not an image suffix")
  return folder


def test_top_images_ranking_equals_pytorch(photo_folder, vgg16_safetensors, torch_vgg16):
  report = json.loads(run_cli("top-images", photo_folder, "--layer", "24", "--map", "271",
                              "--top", "9", "--weights", vgg16_safetensors, "--json").stdout)
  assert report["skipped"] == [str(photo_folder / "broken.jpg")]
  scored = {row["image"]: row["mean"] for row in report["top"]}
  assert len(scored) == 4  # RGB, greyscale and RGBA photos, recursively
  expected = {image: torch_means(torch_vgg16, fileio.read_image(image), 24)[271]
              for image in scored}
  assert [row["image"] for row in report["top"]] == sorted(expected, key=lambda i: -expected[i])
  for image, mean in scored.items():
    assert mean == pytest.approx(expected[image], abs=1e-4 * max(abs(v) for v in expected.values()))


def test_top_images_all_maps_and_grid(tmp_path, photo_folder):
  table_path = tmp_path / "table.json"
  run_cli("top-images", photo_folder, "--layer", "10", "--all-maps", "--top", "2",
          "--weights", "random", "--batch", "3", "--out", table_path)
  table = json.loads(table_path.read_text())
  assert len(table["maps"]) == 256 and table["images"] == 4
  assert all(len(rows) == 2 for rows in table["maps"].values())
  first = table["maps"]["5"]
  assert first[0]["mean"] >= first[1]["mean"]

  grid = tmp_path / "grid.png"
  run_cli("top-images", photo_folder, "--layer", "10", "--map", "5", "--top", "3",
          "--weights", "random", "--out", grid)
  assert grid.is_file()


def test_top_images_bad_input(tmp_path):
  empty = tmp_path / "empty"
  empty.mkdir()
  assert "no images in" in error_line(run_cli("top-images", empty, "--layer", "24", "--map",
                                              "1", "--weights", "random", expect_exit=1))
  assert "not a folder" in error_line(run_cli("top-images", tmp_path / "nope", "--layer", "24",
                                              "--map", "1", "--weights", "random",
                                              expect_exit=1))
  assert "--map N or --all-maps" in error_line(run_cli("top-images", tmp_path, "--layer", "24",
                                                       "--weights", "random", expect_exit=1))


def test_python_api_probe_and_top_images(photo_files, photo_folder, vgg16_weights):
  import jaxviz

  result = jaxviz.probe_photo(photo_files["astronaut.png"], "conv3_1", weights=vgg16_weights,
                              top=5, maps=[9])
  direct = probe_lib.probe(vgg16_weights, fileio.read_image(photo_files["astronaut.png"]),
                           resolve_target(10), top=5, maps=[9])
  np.testing.assert_array_equal(result.means, direct.means)
  assert result.asked == direct.asked and result.top == direct.top
  pre = jaxviz.probe_photo(photo_files["astronaut.png"], "conv3_1", weights=vgg16_weights,
                           pre_relu=True)
  assert pre.target.pre_relu and pre.means.min() < 0 <= result.means.min()
  scores = jaxviz.top_images(photo_folder, 10, weights=vgg16_weights, batch=2)
  assert scores.means.shape == (4, 256) and len(scores.skipped) == 1
  ranked = scores.top_images(9, 4)
  assert [mean for _, mean in ranked] == sorted(scores.means[:, 9], reverse=True)

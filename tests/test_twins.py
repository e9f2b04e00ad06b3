"""Every command's Python twin (`jaxviz.*`) does what the command does: the same files,
byte for byte, and the same result, on the same inputs (#19: one application layer
under both faces)."""

from __future__ import annotations

import json
import shutil

import numpy as np
from PIL import Image

import jaxviz
from jaxviz.optvis.recipes import Schedule

from conftest import run_cli

TINY = ["--size0", "32", "--scales", "2", "--steps", "2"]
SMALL = Schedule(size0=32, scales=2, steps=2)


def same_bytes(*paths) -> bool:
  first = paths[0].read_bytes()
  return all(path.read_bytes() == first for path in paths[1:])


def same_renders(a, b) -> None:
  """Two render directories hold the same maps: PNGs and recorded results."""
  records = [json.loads((d / "render.json").read_text()) for d in (a, b)]
  for key in ("identity", "identity_hash", "files", "sha256", "objectives", "dead_at_start"):
    assert records[0][key] == records[1][key], key
  for name in records[0]["files"].values():
    assert same_bytes(a / name, b / name)
  assert same_bytes(a / "grid.png", b / "grid.png")


def test_layers_convert_info_and_classify(tmp_path, vgg16_pth, vgg16_safetensors, photo_files):
  assert json.loads(run_cli("layers", "--arch", "vgg11", "--side", "64", "--json").stdout) == \
      jaxviz.layers_table("vgg11", 64).to_json()
  run_cli("convert", vgg16_pth, "--out", tmp_path / "cli.safetensors")
  jaxviz.convert_weights(vgg16_pth, tmp_path / "api.safetensors")
  assert same_bytes(tmp_path / "cli.safetensors", tmp_path / "api.safetensors")
  photo = photo_files["chelsea.jpg"]
  assert json.loads(run_cli("classify", photo, "--weights", vgg16_safetensors, "--top", "3",
                            "--json").stdout) == \
      jaxviz.classify_photo(photo, 3, weights=str(vgg16_safetensors)).to_json()


def test_render_sweep_atlas_and_info(tmp_path):
  cli = run_cli("render", "-l", "10", "-m", "3,1", "-w", "random", "-o", tmp_path / "cli", *TINY)
  assert "(random weights: these renders show an untrained network)" in cli.output
  outcome = jaxviz.render_dir(tmp_path / "api", 10, [3, 1], weights="random", schedule=SMALL,
                              progress=False)
  assert sorted(outcome.rendered) == [1, 3]
  same_renders(tmp_path / "cli", tmp_path / "api")
  assert json.loads(run_cli("info", tmp_path / "cli" / "10_3.png", "--json").stdout) == \
      jaxviz.png_info(tmp_path / "api" / "10_3.png").to_json()

  run_cli("sweep", "-l", "10", "-m", "0:2", "-w", "random", "-o", tmp_path / "cli_sweep", *TINY)
  swept = jaxviz.sweep(tmp_path / "api_sweep", 10, "0:2", weights="random", schedule=SMALL,
                       progress=False)
  same_renders(tmp_path / "cli_sweep", tmp_path / "api_sweep")
  assert swept.atlas.maps == 2
  assert same_bytes(tmp_path / "cli_sweep" / "index.html", tmp_path / "api_sweep" / "index.html")
  run_cli("atlas", tmp_path / "cli_sweep")
  jaxviz.build_atlas(tmp_path / "api_sweep")
  assert same_bytes(tmp_path / "cli_sweep" / "index.html", tmp_path / "api_sweep" / "index.html")


def test_preview_is_the_same_render_from_both_faces(tmp_path):
  """`--preview` and `preview=True`: the same schedule, recorded as a preview, so each face
  resumes the other's directory."""
  run_cli("render", "-l", "2", "-m", "5", "-w", "random", "-o", tmp_path / "cli", "--preview")
  outcome = jaxviz.render_dir(tmp_path / "api", 2, [5], weights="random", preview=True,
                              progress=False)
  assert outcome.record["identity_hash"] == json.loads(
      (tmp_path / "cli" / "render.json").read_text())["identity_hash"]
  same_renders(tmp_path / "cli", tmp_path / "api")
  again = jaxviz.render_dir(tmp_path / "cli", 2, [5], weights="random", preview=True,
                            progress=False)
  assert again.skipped == 1 and again.rendered == []


def test_probe_with_its_figure(tmp_path, photo_files):
  photo = photo_files["astronaut.png"]
  cli = run_cli("probe", photo, "-l", "10", "--top", "2", "--map", "7", "-w", "random",
                "--renders", tmp_path / "cli_renders", "-o", tmp_path / "cli.png", "--json",
                *TINY)
  ours = jaxviz.probe_photo(photo, 10, top=2, maps=[7], weights="random",
                            figure=tmp_path / "api.png", renders=tmp_path / "api_renders",
                            schedule=SMALL, progress=False)
  assert json.loads(cli.stdout) == ours.to_json()
  assert ours.asked[7][0] > 0 and ours.figure == tmp_path / "api.png"
  same_renders(tmp_path / "cli_renders", tmp_path / "api_renders")
  assert same_bytes(tmp_path / "cli.png", tmp_path / "api.png")


def test_top_images_compare_and_spectrum(tmp_path, photo_files):
  folder = tmp_path / "photos"
  folder.mkdir()
  for path in photo_files.values():
    shutil.copy(path, folder)
  cli = run_cli("top-images", folder, "-l", "4", "--map", "2", "--top", "2", "-w", "random",
                "-o", tmp_path / "cli.png", "--json")
  ours = jaxviz.top_images(folder, 4, map=2, top=2, weights="random", out=tmp_path / "api.png")
  assert json.loads(cli.stdout) == ours.to_json()
  assert same_bytes(tmp_path / "cli.png", tmp_path / "api.png")
  run_cli("top-images", folder, "-l", "4", "--all-maps", "-w", "random", "-o",
          tmp_path / "cli.json")
  jaxviz.top_images(folder, 4, all_maps=True, weights="random", out=tmp_path / "api.json")
  assert same_bytes(tmp_path / "cli.json", tmp_path / "api.json")

  run_cli("compare", "-l", "10", "-m", "1,2", "--recipes", "seed", "-w", "random", *TINY,
          "-o", tmp_path / "cli_compare.png")
  compared = jaxviz.compare(10, [1, 2], ["seed"], weights="random", size0=32, scales=2,
                            steps=2, out=tmp_path / "api_compare.png", progress=False)
  assert same_bytes(tmp_path / "cli_compare.png", tmp_path / "api_compare.png")
  assert set(compared.objectives["seed"]) == {1, 2}

  run_cli("spectrum", folder, "--size", "16", "-o", tmp_path / "cli.npy")
  magnitude = jaxviz.spectrum(folder, tmp_path / "api.npy", 16).magnitude
  assert same_bytes(tmp_path / "cli.npy", tmp_path / "api.npy")
  np.testing.assert_array_equal(np.load(tmp_path / "cli.npy"), magnitude)
  assert Image.open(tmp_path / "cli_compare.png").size[0] > 0

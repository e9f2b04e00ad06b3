"""The CLI skeleton: layers, convert, classify, and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from jaxviz import fileio
from jaxviz.app import load_weights

from conftest import assert_names_all, error_line, run_cli


def test_layers_json_lists_vgg16_as_the_spec_indexes_it():
  table = json.loads(run_cli("layers", "--json").output)["layers"]
  assert len(table) == 31
  by_index = {row["index"]: row for row in table}
  spec = {0: "conv1_1", 2: "conv1_2", 4: "pool1", 5: "conv2_1", 7: "conv2_2", 9: "pool2",
          10: "conv3_1", 12: "conv3_2", 14: "conv3_3", 16: "pool3", 17: "conv4_1", 19: "conv4_2",
          21: "conv4_3", 23: "pool4", 24: "conv5_1", 26: "conv5_2", 28: "conv5_3", 30: "pool5"}
  for index, name in spec.items():
    assert by_index[index]["name"] == name
  assert by_index[25] == {"index": 25, "name": "relu5_1", "kind": "relu", "channels": 512,
                          "output_size": 14, "reads": "relu5_1", "pre_relu_reads": None}
  assert by_index[30]["output_size"] == 7 and by_index[7]["channels"] == 128


COMMANDS = ("layers", "convert", "classify", "render", "probe", "top-images", "sweep",
            "compare", "spectrum", "info", "atlas")


def test_every_command_has_help_with_an_offline_example():
  for command in COMMANDS:
    text = " ".join(run_cli(command, "--help").output.split())
    assert "Example" in text, command
    # Offline: the example needs no download (random weights, or no weights at all).
    assert "offline" in text.lower() and ("-w random" in text or "Example (offline" in text), command


def test_convert_command_writes_a_loadable_file_byte_for_byte_the_same(tmp_path, vgg16_pth,
                                                                      vgg16_safetensors):
  """The fixture converted the same .pth earlier in this process: a conversion is
  byte-deterministic (safetensors' own writer orders its metadata by a hash map
  seeded anew for every file, so two conversions differed)."""
  out = tmp_path / "sub" / "vgg16.safetensors"
  result = run_cli("convert", vgg16_pth, "--out", out)
  assert "vgg16" in result.output and out.is_file()
  assert fileio.sha256_file(out) == fileio.sha256_file(vgg16_safetensors)
  assert load_weights(str(out)).arch == "vgg16"


def torch_logits(model, photo: np.ndarray) -> np.ndarray:
  x = torch.from_numpy(photo.astype(np.float64)).permute(2, 0, 1)[None]
  x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
  mean = torch.tensor([0.485, 0.456, 0.406], dtype=torch.float64)[:, None, None]
  std = torch.tensor([0.229, 0.224, 0.225], dtype=torch.float64)[:, None, None]
  with torch.no_grad():
    return model((x - mean) / std)[0].numpy()


def test_classify_json_matches_torchvision_on_a_photo(photo_files, vgg16_safetensors,
                                                      torch_vgg16):
  photo_path = photo_files["chelsea.jpg"]
  result = run_cli("classify", photo_path, "--weights", vgg16_safetensors, "--top", 5, "--json")
  report = json.loads(result.stdout)
  expected = torch_logits(torch_vgg16, fileio.read_image(photo_path))
  assert [row["index"] for row in report["top"]] == list(np.argsort(-expected)[:5])
  for row in report["top"]:
    assert row["logit"] == pytest.approx(expected[row["index"]], rel=1e-4, abs=1e-4)
    assert row["label"] and 0 < row["prob"] < 1
  assert report["random_weights"] is False


def test_classify_with_random_weights_says_so(photo_files):
  result = run_cli("classify", photo_files["camera_grey.png"], "--weights", "random", "--top", 3)
  assert "random" in result.output.lower() and "mean nothing" in result.output


@pytest.mark.parametrize("make_file,needle", [
    (lambda p: None, "image not found"),
    (lambda p: p.write_bytes(b""), "not an image"),
    (lambda p: p.write_text("hello, not a picture"), "not an image"),
])
def test_classify_bad_image_is_one_named_line(tmp_path, make_file, needle):
  path = tmp_path / "photo.jpg"
  make_file(path)
  line = error_line(run_cli("classify", path, "--weights", "random", expect_exit=1))
  assert_names_all(line, needle, "photo.jpg")


def test_bad_weights_are_one_named_line(tmp_path, photo_files, vgg16_safetensors):
  truncated = tmp_path / "cut.safetensors"
  truncated.write_bytes(vgg16_safetensors.read_bytes()[:4096])
  resnet = tmp_path / "resnet.pth"
  torch.save(torchvision.models.resnet18().state_dict(), resnet)
  photo = photo_files["astronaut.png"]
  for weights, needles in ((tmp_path / "missing.safetensors", ["not found", "missing"]),
                           (truncated, ["cut.safetensors"]),
                           (resnet, ["resnet.pth", "not a torchvision VGG", "missing"])):
    line = error_line(run_cli("classify", photo, "--weights", weights, expect_exit=1))
    assert_names_all(line, *needles)


def test_bad_options_are_one_line(photo_files):
  photo = photo_files["astronaut.png"]
  assert "--top" in error_line(run_cli("classify", photo, "--top", 0, expect_exit=1))
  assert "precision" in error_line(run_cli("classify", photo, "--precision", "max",
                                           expect_exit=1))
  assert "vgg16, vgg19" in error_line(run_cli("layers", "--arch", "vgg17", expect_exit=1))


def test_failed_convert_leaves_no_output(tmp_path):
  src = tmp_path / "junk.pth"
  src.write_bytes(b"not a pickle")
  out = tmp_path / "out.safetensors"
  assert "junk.pth" in error_line(run_cli("convert", src, "--out", out, expect_exit=1))
  assert sorted(p.name for p in tmp_path.iterdir()) == ["junk.pth"]


def test_console_script_errors_have_no_traceback(tmp_path):
  """The installed entry point itself, in a subprocess, as a user runs it."""
  result = subprocess.run([sys.executable, "-m", "jaxviz.cli", "classify",
                           str(tmp_path / "none.png"), "--weights", "random"],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("error: image not found")
  assert "Traceback" not in result.stderr + result.stdout

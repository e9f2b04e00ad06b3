"""Layer specs: what "layer L" reads (SPEC §1), resolved once against the loaded architecture."""

from __future__ import annotations

import json

import pytest

from jaxviz import fileio, layers
from jaxviz.errors import JaxvizError
from jaxviz.vgg import resolve_target

import torch_reference
from conftest import error_line, make_torch_vgg, relative_error, run_cli, save_pth

CONV5_1 = {"vgg11": 16, "vgg16": 24, "vgg19": 28}


def test_a_conv_layer_reads_its_relu_unless_pre_relu():
  for spec in (24, "24", "features.24", "conv5_1"):
    target = resolve_target(spec)
    assert target.layer.name == "conv5_1" and target.read.name == "relu5_1"
    assert target.describe() == "conv5_1 (layer 24, post-ReLU)"
  assert resolve_target("conv5_1", pre_relu=True).read.name == "conv5_1"
  assert resolve_target("relu5_1").read.name == "relu5_1"
  assert resolve_target("pool5").describe() == "pool5 (layer 30)"
  with pytest.raises(JaxvizError, match="pre-ReLU reading is for conv layers.*pool5"):
    resolve_target("pool5", pre_relu=True)


def test_layers_command_says_how_each_layer_is_read():
  table = {row["index"]: row for row in json.loads(run_cli("layers", "--json").stdout)["layers"]}
  assert table[24]["reads"] == "relu5_1" and table[24]["pre_relu_reads"] == "conv5_1"
  assert table[30]["reads"] == "pool5" and table[30]["pre_relu_reads"] is None
  text = run_cli("layers").stdout
  line = next(row for row in text.splitlines() if "conv5_1" in row)
  assert "relu5_1" in line and "post-ReLU" in line and "--pre-relu" in line
  line = error_line(run_cli("render", "--layer", "pool5", "--maps", "0", "--pre-relu",
                            "--weights", "random", expect_exit=1))
  assert "pre-ReLU reading is for conv layers" in line and "pool5" in line


@pytest.fixture(scope="module", params=["vgg11", "vgg19"])
def other_depth(request, tmp_path_factory):
  """A seeded torchvision VGG11/VGG19 and its weights file made by `jaxviz convert`."""
  arch = request.param
  model = make_torch_vgg(arch)
  folder = tmp_path_factory.mktemp(arch)
  converted = folder / f"{arch}.safetensors"
  run_cli("convert", save_pth(model, folder / f"{arch}.pth"), "--out", converted)
  return arch, model, converted


def test_conv5_1_means_each_networks_own_conv5_1(other_depth, photo_files, tmp_path):
  arch, model, weights_file = other_depth
  photo = photo_files["chelsea.jpg"]
  report = json.loads(run_cli("probe", photo, "--layer", "conv5_1", "--weights", weights_file,
                              "--json").stdout)
  assert (report["layer"], report["layer_name"], report["reads"]) == (CONV5_1[arch], "conv5_1",
                                                                       "relu5_1")
  assert len(report["means"]) == 512
  expected = torch_reference.channel_means(model, fileio.read_image(photo), CONV5_1[arch])
  assert relative_error(report["means"], expected) <= 1e-5

  out = tmp_path / "o"
  run_cli("render", "--layer", "conv5_1", "--maps", "3", "--weights", weights_file,
          "--out", out, "--size0", "16", "--scales", "1", "--steps", "1")
  record = json.loads((out / "render.json").read_text())
  assert record["identity"]["layer"] == CONV5_1[arch] and record["identity"]["arch"] == arch
  assert record["reads"] == "relu5_1"

  import jaxviz
  result = jaxviz.probe_photo(photo, "conv5_1", weights=str(weights_file), top=3)
  assert result.target.layer.index == CONV5_1[arch] and result.target.arch == arch


def test_layer_specs_name_every_valid_layer_of_the_arch():
  with pytest.raises(JaxvizError, match="unknown layer 'conv5_4' for vgg16"):
    layers.resolve_layer("conv5_4")
  assert layers.resolve_layer("conv5_4", "vgg19").index == 34

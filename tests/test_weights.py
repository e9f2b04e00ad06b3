"""The converter's strict table, the safetensors file, random weights and `--weights` resolution."""

from __future__ import annotations

import http.client
import io
import json
import pickle
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import safetensors
import safetensors.numpy
import torch
import torchvision

import jaxviz_convert.published as published
import jaxviz_convert.torch_weights as torch_weights
import jaxviz_convert.torchvision_vgg as torchvision_vgg
from jaxviz import app, fileio, vgg
from jaxviz import weights as weights_lib
from jaxviz.errors import JaxvizError

from conftest import assert_names_all


def save_state_dict(path: Path, state_dict: dict) -> Path:
  torch.save(state_dict, path)
  return path


@pytest.mark.parametrize("arch", ["vgg11", "vgg16", "vgg19"])
def test_the_parameter_table_is_the_flax_modules(arch):
  assert vgg.param_shapes(arch) == vgg.flax_param_shapes(arch)


def test_weight_table_pairs_every_key_explicitly():
  table = {torch_key: flax_key for torch_key, flax_key, _ in torchvision_vgg.weight_table()}
  assert len(table) == 32  # 13 convs and 3 dense layers, weight and bias each
  assert table["features.24.weight"] == "conv5_1.kernel"
  assert table["features.28.bias"] == "conv5_3.bias"
  assert table["classifier.0.weight"] == "fc6.kernel"
  assert table["classifier.6.bias"] == "fc8.bias"
  expected = {k: tuple(v.shape) for k, v in torchvision.models.vgg16().state_dict().items()}
  assert torch_weights.torch_shapes("vgg16") == expected


@pytest.mark.parametrize("arch", ["vgg11", "vgg19"])
def test_other_vgg_depths_are_detected_and_convert(arch):
  state_dict = {k: v.numpy() for k, v in getattr(torchvision.models, arch)().state_dict().items()}
  assert torch_weights.detect_arch(state_dict) == arch
  flat = torch_weights.state_dict_to_flat(state_dict, arch)
  assert weights_lib.mismatch_report({k: v.shape for k, v in flat.items()},
                                     vgg.param_shapes(arch)) is None


def test_converted_file_records_its_source(vgg16_pth, vgg16_safetensors):
  with safetensors.safe_open(str(vgg16_safetensors), framework="numpy") as handle:
    metadata = handle.metadata()
  assert metadata["arch"] == "vgg16"
  assert metadata["source"] == vgg16_pth.name
  assert metadata["source_sha256"] == fileio.sha256_file(vgg16_pth)
  categories = json.loads(metadata["categories"])
  assert len(categories) == 1000 and categories[0] == "tench"


def test_converted_values_equal_the_transposed_torch_tensors(torch_vgg16, vgg16_weights):
  conv = torch_vgg16.features[24].weight.detach().numpy()
  np.testing.assert_array_equal(vgg16_weights.params["conv5_1"]["kernel"],
                                conv.transpose(2, 3, 1, 0).astype(np.float32))
  fc8 = torch_vgg16.classifier[6].weight.detach().numpy()
  np.testing.assert_array_equal(vgg16_weights.params["fc8"]["kernel"], fc8.T.astype(np.float32))


def test_resnet_state_dict_is_refused_by_name(tmp_path):
  src = save_state_dict(tmp_path / "resnet18.pth", torchvision.models.resnet18().state_dict())
  out = tmp_path / "out.safetensors"
  with pytest.raises(JaxvizError) as error:
    torch_weights.convert_file(src, out)
  # compared with the arch it is nearest (the most keys in common), and how it differs
  assert_names_all(str(error.value), "resnet18.pth", "not a torchvision VGG",
                   "compared with resnet50", "missing layer1.0.conv3.weight",
                   "wrong shape layer1.0.conv1.weight")
  assert not out.exists() and list(tmp_path.iterdir()) == [src]


def test_missing_unexpected_and_wrong_shaped_keys_are_each_named(tmp_path, vgg16_pth):
  state_dict = torch.load(vgg16_pth, weights_only=True)
  del state_dict["features.0.bias"]
  state_dict["extra.weight"] = torch.zeros(3)
  state_dict["classifier.6.weight"] = torch.zeros(10, 4096)
  src = save_state_dict(tmp_path / "broken.pth", state_dict)
  with pytest.raises(JaxvizError) as error:
    torch_weights.convert_file(src, tmp_path / "out.safetensors", arch="vgg16")
  assert_names_all(str(error.value), "missing features.0.bias", "unexpected extra.weight",
                   "wrong shape classifier.6.weight (10, 4096) != (1000, 4096)")
  assert not (tmp_path / "out.safetensors").exists()


def test_truncated_pth_is_named_and_leaves_no_output(tmp_path, vgg16_pth):
  src = tmp_path / "truncated.pth"
  src.write_bytes(vgg16_pth.read_bytes()[: 1 << 20])
  with pytest.raises(JaxvizError, match="cannot read weights .*truncated.pth"):
    torch_weights.convert_file(src, tmp_path / "out.safetensors")
  assert sorted(p.name for p in tmp_path.iterdir()) == ["truncated.pth"]


def test_truncated_and_foreign_safetensors_are_named(tmp_path, vgg16_safetensors):
  truncated = tmp_path / "truncated.safetensors"
  truncated.write_bytes(vgg16_safetensors.read_bytes()[:5000])
  with pytest.raises(JaxvizError, match="truncated.safetensors"):
    weights_lib.load_safetensors(truncated)
  foreign = tmp_path / "foreign.safetensors"
  safetensors.numpy.save_file({"w": np.zeros(3, np.float32)}, str(foreign))
  with pytest.raises(JaxvizError, match="foreign.safetensors .*not one written by"):
    weights_lib.load_safetensors(foreign)


def test_random_weights_are_seeded_and_torchvision_scaled():
  first, again, other = (weights_lib.random_weights(seed) for seed in (0, 0, 1))
  kernel = first.params["conv3_1"]["kernel"]
  np.testing.assert_array_equal(kernel, again.params["conv3_1"]["kernel"])
  assert not np.array_equal(kernel, other.params["conv3_1"]["kernel"])
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / (9 * 256)), rtol=0.02)
  np.testing.assert_allclose(first.params["fc7"]["kernel"].std(), 0.01, rtol=0.02)
  assert first.is_random and "RANDOM" in first.describe() and first.label == "random (seed 0)"


def test_random_weights_cost_no_disk_and_any_subset_is_the_whole_draw(empty_jaxviz_cache):
  whole = weights_lib.random_weights(5, "vgg11").params
  part = weights_lib.random_weights(5, "vgg11").subset(["conv5_2", "conv1_1", "fc8"])
  assert sorted(part) == ["conv1_1", "conv5_2", "fc8"]
  for name in part:
    np.testing.assert_array_equal(part[name]["kernel"], whole[name]["kernel"])
  loader = weights_lib.random_weights(5, "vgg11").loader(["conv1_1"])
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(loader))()["conv1_1"]["kernel"],
                                whole["conv1_1"]["kernel"])
  assert not empty_jaxviz_cache.exists() or not list(empty_jaxviz_cache.rglob("*.safetensors"))


def test_a_file_is_read_only_as_far_as_a_layer_needs(vgg16_safetensors, tmp_path):
  """The header is checked at once, the tensors when needed: a NaN in fc8 does not stop
  a render of conv1_1, and stops what reads fc8, naming the file and tensor."""
  with safetensors.safe_open(str(vgg16_safetensors), framework="numpy") as handle:
    metadata = handle.metadata()
    flat = {key: handle.get_tensor(key) for key in handle.keys()}
  flat["fc8.kernel"][0, 0] = np.nan
  broken = tmp_path / "nan_fc8.safetensors"
  weights_lib.write_safetensors(broken, flat, metadata)
  loaded = weights_lib.load_safetensors(broken)
  assert sorted(loaded.subset(["conv1_1"])) == ["conv1_1"]
  with pytest.raises(JaxvizError, match="nan_fc8.safetensors: tensor fc8.kernel holds 1 "):
    loaded.subset(["fc8"])


def test_resolve_reads_pth_safetensors_and_random(vgg16_pth, vgg16_safetensors, vgg16_weights):
  from_pth = app.load_weights(str(vgg16_pth))
  np.testing.assert_array_equal(from_pth.params["fc6"]["kernel"],
                                vgg16_weights.params["fc6"]["kernel"])
  assert app.load_weights(str(vgg16_safetensors)).sha256 == vgg16_weights.sha256
  assert app.load_weights("random:3").label == "random (seed 3)"
  for bad, message in (("random:x", "integer seed"), ("nope.safetensors", "not found"),
                       ("gone.pth", "not found"), ("vgg", "is not 'imagenet'")):
    with pytest.raises(JaxvizError, match=message):
      app.load_weights(bad)


def test_imagenet_uses_torchvision_cache_then_jaxviz_cache(vgg16_pth, tmp_path, monkeypatch,
                                                           empty_jaxviz_cache):
  """The real download path, served from where torchvision caches its file."""
  checkpoints = published.hub_dir() / "checkpoints"
  assert str(checkpoints).startswith(str(tmp_path))  # TORCH_HOME isolated by conftest
  checkpoints.mkdir(parents=True)
  (checkpoints / "vgg16-397923af.pth").symlink_to(vgg16_pth)

  def no_network(*args, **kwargs):
    raise AssertionError("the cached file should have been used")

  monkeypatch.setattr(published, "_download", no_network)
  # The stand-in is not the published file: its name's hash is made its own (the check
  # itself: test_a_cached_file_that_is_not_the_published_one_is_refused).
  monkeypatch.setattr(published, "name_hash", lambda path: fileio.sha256_file(path)[:8])
  loaded = app.load_weights("imagenet")
  assert loaded.label == "imagenet" and not loaded.is_random
  assert weights_lib.imagenet_cache_path().is_file()

  # Second time: the converted file alone, torch not needed.
  monkeypatch.setattr(app.rendering, "_converter", no_network)
  again = app.load_weights("imagenet")
  np.testing.assert_array_equal(again.params["conv1_1"]["kernel"],
                                loaded.params["conv1_1"]["kernel"])


def test_a_cached_file_that_is_not_the_published_one_is_refused(vgg16_pth, tmp_path,
                                                                 empty_jaxviz_cache):
  """torch uses a file in its cache unchecked; jaxviz checks the sha256 prefix in its name
  before calling it `imagenet`."""
  checkpoints = published.hub_dir() / "checkpoints"
  checkpoints.mkdir(parents=True)
  (checkpoints / "vgg16-397923af.pth").symlink_to(vgg16_pth)  # the seeded random VGG16
  with pytest.raises(JaxvizError) as error:
    app.load_weights("imagenet")
  assert_names_all(str(error.value), "vgg16-397923af.pth", "397923af", "not the published")
  assert not weights_lib.imagenet_cache_path().exists()
  # A file whose name carries its own sha256 prefix passes the same check.
  named = tmp_path / f"vgg16-{fileio.sha256_file(vgg16_pth)[:8]}.pth"
  named.symlink_to(vgg16_pth)
  published.check_published(named)
  assert published.name_hash("weights.pth") is None  # no hash, nothing to check


def test_imagenet_offline_names_the_alternatives(monkeypatch, empty_jaxviz_cache):
  def offline(*args, **kwargs):
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

  monkeypatch.setattr(published.urllib.request, "urlopen", offline)
  with pytest.raises(JaxvizError) as error:
    app.load_weights("imagenet")
  message = str(error.value)
  assert_names_all(message, "cannot download", "--weights PATH", "--weights random")
  assert "\n" not in message
  assert not weights_lib.imagenet_cache_path().exists()
  assert list((published.hub_dir() / "checkpoints").iterdir()) == []  # no partial file


def _serve(source: Path, where: Path, monkeypatch, arch: str = "vgg16",
           name: str | None = None) -> str:
  """Publishes `source` at a file:// address (urllib fetches those as it does https) named
  as torchvision names its files, with the sha256 prefix of `source` unless `name`."""
  served = where / "served" / (name or f"{arch}-{fileio.sha256_file(source)[:8]}.pth")
  served.parent.mkdir()
  served.symlink_to(source)
  monkeypatch.setitem(torchvision_vgg.IMAGENET_URLS, arch, served.as_uri())
  return served.name


def test_imagenet_is_downloaded_into_torchs_cache_checked_and_converted(
    vgg16_pth, vgg16_weights, tmp_path, monkeypatch, empty_jaxviz_cache, capfd):
  """The download itself, from a served copy: the file lands where torch's hub keeps it
  (so torchvision would find it too), with a progress bar, and is converted once."""
  name = _serve(vgg16_pth, tmp_path, monkeypatch)
  loaded = app.load_weights("imagenet")
  assert loaded.label == "imagenet"
  np.testing.assert_array_equal(loaded.params["fc6"]["kernel"], vgg16_weights.params["fc6"]["kernel"])
  kept = published.hub_dir() / "checkpoints" / name
  assert not kept.is_symlink() and fileio.sha256_file(kept) == fileio.sha256_file(vgg16_pth)
  assert kept.parent == Path(torch.hub.get_dir()) / "checkpoints"
  assert f"downloading ImageNet vgg16 ({name})" in capfd.readouterr().err


def test_a_download_that_is_not_the_published_file_is_not_kept(vgg16_pth, tmp_path, monkeypatch,
                                                                empty_jaxviz_cache):
  """A download whose sha256 does not start with its name's prefix is refused in one line
  and leaves nothing behind: neither in torch's cache nor a partial file."""
  _serve(vgg16_pth, tmp_path, monkeypatch, name="vgg16-00000000.pth")
  with pytest.raises(JaxvizError) as error:
    app.load_weights("imagenet")
  assert_names_all(str(error.value), "vgg16-00000000.pth", "not the published file",
                   "nothing was kept")
  assert list((published.hub_dir() / "checkpoints").iterdir()) == []
  assert not weights_lib.imagenet_cache_path().exists()


class _CutOff(io.BytesIO):
  """A response whose server promises 3 MB and stops after 1 MB: by raising
  IncompleteRead (`raises`), or as http.client's read(amt) does when the peer closes,
  by returning b"" without an error."""

  headers = {"Content-Length": "3000000"}

  def __init__(self, raises: bool):
    super().__init__(b"x" * 1000000)
    self.raises = raises

  def read(self, size=-1):
    if self.tell() and self.raises:
      raise http.client.IncompleteRead(b"", 2000000)
    return super().read(size)

  def __exit__(self, *exc):
    return False


@pytest.mark.parametrize("raises", [True, False], ids=["IncompleteRead", "closed-early"])
def test_a_download_cut_off_midway_leaves_nothing(monkeypatch, empty_jaxviz_cache, raises):
  """A connection lost mid-file is the same one-line error as being offline, and no
  partial file is left in torch's cache."""
  monkeypatch.setattr(published.urllib.request, "urlopen",
                      lambda url, timeout: _CutOff(raises))
  with pytest.raises(JaxvizError) as error:
    app.load_weights("imagenet")
  assert_names_all(str(error.value), "cannot download the ImageNet vgg16 weights",
                   "--weights random")
  assert list((published.hub_dir() / "checkpoints").iterdir()) == []


def test_a_short_download_without_a_hash_in_its_name_is_not_kept(monkeypatch,
                                                                  empty_jaxviz_cache):
  """A file whose name carries no hash has only its Content-Length to be checked by: a
  server closing early must not leave a short file to be read as the weights."""
  monkeypatch.setattr(published.urllib.request, "urlopen",
                      lambda url, timeout: _CutOff(raises=False))
  with pytest.raises(JaxvizError) as error:
    published.fetch("https://example.org/weights.pth", "example", "a .pth")
  assert_names_all(str(error.value), "cannot download the example weights",
                   "closed after 1000000 of 3000000 bytes")
  assert list((published.hub_dir() / "checkpoints").iterdir()) == []


def test_an_unwritable_torch_cache_is_one_line(monkeypatch, empty_jaxviz_cache):
  """torch's hub directory that cannot hold the download (here its `checkpoints` is a
  file) is the one-line error, not a traceback from mkdir."""
  published.hub_dir().mkdir(parents=True)
  (published.hub_dir() / "checkpoints").write_text("not a directory")
  monkeypatch.setattr(published.urllib.request, "urlopen",
                      lambda url, timeout: pytest.fail("downloaded into an unusable cache"))
  with pytest.raises(JaxvizError) as error:
    app.load_weights("imagenet")
  assert_names_all(str(error.value), "cannot download the ImageNet vgg16 weights",
                   "--weights random")

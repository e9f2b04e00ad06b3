"""The canonical networks (inceptionv1, googlenet, resnet50) through jaxviz's commands.

Each network's own parity, tap by tap, is in tests/test_net_<arch>.py; here a
seeded random reference model is saved as a `.pth` and goes through the public
path: `jaxviz convert` (the arch detected from the state dict), `--weights`, then
the commands. The commands are arch-agnostic once a tap is resolved, so every
arch runs render, probe and classify, and one arch (resnet50, at a shallow tap)
runs the rest: sweep, atlas, compare, top-images and the three recipes.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import jaxviz
from jaxviz import nets
from jaxviz.optvis import recipes

from conftest import assert_names_all, error_line, lucent_or_skip, run_cli, save_pth

TINY = ["--size0", "32", "--scales", "2", "--steps", "2"]
# A shallow tap per arch keeps each command's program small.
SHALLOW = {"inceptionv1": "mixed3a", "googlenet": "inception3a", "resnet50": "layer1.0"}
CHANNELS = {"inceptionv1": 256, "googlenet": 256, "resnet50": 256}


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
  """{arch: (the reference's random `.pth`, its `jaxviz convert` output)}."""
  folder = tmp_path_factory.mktemp("nets")
  made = {}
  for arch in nets.CANONICAL_ARCHS:
    if arch == "inceptionv1" and importlib.util.find_spec("lucent") is None:
      continue  # its reference is lucent's module; its tests call lucent_or_skip
    reference = importlib.import_module(f"jaxviz_convert.reference_{arch}").reference_model(seed=0)
    pth = save_pth(reference, folder / f"{arch}.pth")
    out = folder / f"{arch}.safetensors"
    result = json.loads(run_cli("convert", pth, "--out", out, "--json").stdout)
    assert result["arch"] == arch  # detected from the state dict alone
    made[arch] = (pth, out)
  return made


@pytest.mark.parametrize("arch", nets.CANONICAL_ARCHS)
def test_layers_lists_every_tap_by_the_references_name(arch):
  listed = json.loads(run_cli("layers", "--arch", arch, "--json").stdout)
  taps = nets.taps(arch)
  assert [row["name"] for row in listed["layers"]] == [tap.name for tap in taps]
  rows = {row["name"]: row for row in listed["layers"]}
  assert rows[SHALLOW[arch]]["channels"] == CHANNELS[arch]
  assert listed["layers"][-1]["kind"] == "dense"
  assert listed["layers"][-1]["channels"] == nets.num_classes(arch)
  text = run_cli("layers", "--arch", arch).stdout
  assert SHALLOW[arch] in text


def test_the_references_landmarks_are_where_they_say():
  """Channel counts a reader of lucid, lucent or torchvision knows by heart."""
  by_name = lambda arch: {tap.name: tap for tap in nets.taps(arch)}
  assert by_name("inceptionv1")["mixed4a"].channels == 508
  assert by_name("inceptionv1")["softmax2_pre_activation_matmul"].channels == 1008
  assert by_name("googlenet")["inception4a"].channels == 512
  assert by_name("resnet50")["layer3.2"].channels == 1024
  assert by_name("resnet50")["layer4"].output_side(224) == 7
  assert by_name("inceptionv1")["mixed5b"].output_side(224) == 7
  # lucent's spelling of a torchvision path names the same tap
  assert nets.resolve_tap("layer3_2", "resnet50") == by_name("resnet50")["layer3.2"]


def test_a_storing_torch_hook_is_named_where_it_misleads():
  """ResNet's in-place add and ReLU: the taps a torch user would hook say what they hold."""
  rows = {row["name"]: row for row in json.loads(
      run_cli("layers", "--arch", "resnet50", "--json").stdout)["layers"]}
  for name in ("layer3.2.bn3", "layer3.2.bn1"):
    assert "hook" in rows[name]["note"], name
  assert "layer3.2.bn3" in run_cli("layers", "--arch", "resnet50").stdout


def test_unknown_taps_and_pre_relu_are_one_line():
  line = error_line(run_cli("render", "--arch", "resnet50", "-w", "random", "-l", "layer3.2.bn4",
                            "-m", "0", expect_exit=1))
  assert_names_all(line, "layer3.2.bn4", "resnet50", "layer3.2.bn3")
  line = error_line(run_cli("render", "--arch", "inceptionv1", "-w", "random", "-l", "mixed4a",
                            "-m", "0", "--pre-relu", expect_exit=1))
  assert_names_all(line, "pre-ReLU", "inceptionv1")


def test_convert_names_the_arch_a_state_dict_really_is(converted, tmp_path):
  pth, _ = converted["googlenet"]
  line = error_line(run_cli("convert", pth, "--arch", "resnet50", "--out",
                            tmp_path / "x.safetensors", expect_exit=1))
  assert_names_all(line, "googlenet.pth", "is a googlenet state dict", "not resnet50")
  assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("arch", nets.CANONICAL_ARCHS)
def test_render_probe_and_classify_on_each_arch(arch, converted, tmp_path, photo_files):
  if arch == "inceptionv1":
    lucent_or_skip()
  pth, safetensors = converted[arch]
  tap = SHALLOW[arch]
  record = json.loads(run_cli("render", "-l", tap, "-m", "0,5", "-w", safetensors, "-o",
                              tmp_path / "r", *TINY, "--json").stdout)
  index = nets.resolve_tap(tap, arch).index
  assert record["identity"]["arch"] == arch and record["layer_name"] == tap
  for m in (0, 5):
    image = np.asarray(Image.open(tmp_path / "r" / f"{index}_{m}.png"))
    assert image.ndim == 3 and image.std() > 0  # not a blank image
  photo = photo_files["astronaut.png"]
  probed = json.loads(run_cli("probe", photo, "-l", tap, "--top", "3", "--map", "5", "-w", pth,
                              "--no-renders", "--json").stdout)
  assert probed["arch"] == arch and len(probed["means"]) == CHANNELS[arch]
  assert probed["maps"]["5"]["rank"] >= 1
  ours = jaxviz.probe_photo(str(photo), tap, maps=[5], top=3, weights=str(safetensors),
                            renders=None)
  np.testing.assert_allclose(ours.means, probed["means"], rtol=1e-6)
  classes = json.loads(run_cli("classify", photo, "-w", safetensors, "--top", "3",
                               "--json").stdout)
  assert len(classes["top"]) == 3
  assert all(0 <= row["index"] < nets.num_classes(arch) for row in classes["top"])


def test_every_command_and_recipe_on_resnet50(converted, tmp_path, photo_files):
  _, safetensors = converted["resnet50"]
  tap, arch = "layer1.0", "resnet50"
  index = nets.resolve_tap(tap, arch).index
  folder = tmp_path / "photos"
  folder.mkdir()
  for path in photo_files.values():
    shutil.copy(path, folder)
  run_cli("spectrum", folder, "--size", "32", "-o", tmp_path / "s.npy")
  for recipe, extra in (("lucid", ["--size0", "32", "--steps", "2"]),
                        ("maco", ["--spectrum", tmp_path / "s.npy", "--steps", "2"])):
    record = json.loads(run_cli("render", "-l", tap, "-m", "3", "-w", safetensors, "--recipe",
                                recipe, *extra, "-o", tmp_path / recipe, "--json").stdout)
    assert record["identity"]["recipe"]["name"] == recipe
    assert np.asarray(Image.open(tmp_path / recipe / f"{index}_3.png")).std() > 0
  run_cli("sweep", "-l", tap, "-m", "0:2", "-w", safetensors, "-o", tmp_path / "sweep", *TINY)
  assert sorted(p.name for p in (tmp_path / "sweep").glob("*.png") if "_" in p.name)[:2] == [
      f"{index}_0.png", f"{index}_1.png"]
  run_cli("top-images", folder, "-l", tap, "--all-maps", "-w", safetensors, "-o",
          tmp_path / "top.json")
  run_cli("atlas", tmp_path / "sweep", "--top-images", tmp_path / "top.json")
  html = (tmp_path / "sweep" / "index.html").read_text()
  assert tap in html and "resnet50" in html
  run_cli("compare", "-l", tap, "-m", "1,2", "--recipes", "seed,lucid", "-w", safetensors,
          "--size0", "32", "--steps", "2", "-o", tmp_path / "compare.png")
  assert Image.open(tmp_path / "compare.png").size[0] > 0


def test_the_python_api_takes_an_arch(converted):
  images = jaxviz.render("mixed3a", [1], weights="random:3", arch="inceptionv1",
                         schedule=recipes.Lucid(size0=32, steps=2), progress=False)
  assert images.shape[0] == 1 and np.isfinite(images).all()
  loaded = jaxviz.load_weights(str(converted["googlenet"][1]))
  assert loaded.arch == "googlenet"


# A tap inside a block, a block's output and a tap inside a Bottleneck, each with the path
# README's "Can I trust this render?" gives it: the trunk taps before it, then itself.
TRUST_PATHS = {
    "inceptionv1": ["conv2d0", "conv2d1", "conv2d2", "mixed3a", "mixed3b_3x3"],
    "googlenet": ["conv1", "conv2", "conv3", "inception3a", "inception3b"],
    "resnet50": ["relu", "layer1.0", "layer1.1", "layer1.2", "layer2.0.relu2"],
}
TRUST_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "moon", "brick",
                "grass", "gravel", "retina", "hubble_deep_field")


@pytest.mark.parametrize("arch", nets.CANONICAL_ARCHS)
def test_the_taps_with_a_trunk_taps_channel_means_are_all_listed(arch, converted):
  """`<arch>_table.SAME_CHANNEL_MEANS` (a tap counted once in a trust path) lists
  exactly the taps whose channel means equal an earlier trunk tap's, found by running
  the network (the reference's random weights, 64 px; the logits, which need 224 px on
  inceptionv1, left out)."""
  import jax

  from jaxviz.nets import networks

  if arch == "inceptionv1":
    lucent_or_skip()
  weights = jaxviz.load_weights(str(converted[arch][1]))
  names = tuple(tap.name for tap in nets.taps(arch) if tap.kind != "dense")
  model = networks.NetModel(arch)
  images = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype(np.float32)
  run = jax.jit(lambda params, x: model.features(params, x, names))  # eager takes 5x longer
  found = run(weights.params, (images - np.array(model.mean)) / np.array(model.std))
  taps = [nets.resolve_tap(name, arch) for name in names]
  means = {name: np.asarray(value).mean(axis=(1, 2)) for name, value in found.items()}
  trunk = nets.trunk(arch)
  same = {}
  for tap in taps:
    for earlier in trunk:
      if (earlier.index < tap.index and means[earlier.name].shape == means[tap.name].shape
          and np.abs(means[tap.name]).max() > 0  # deep taps of an untrained net may vanish
          and np.allclose(means[earlier.name], means[tap.name], rtol=1e-6, atol=0)):
        same[tap.name] = earlier.name
  assert same == nets.table(arch).SAME_CHANNEL_MEANS


def test_a_trust_path_counts_each_activation_once():
  from jaxviz.app.commands import trust_path

  path = lambda layer, arch: trust_path(jaxviz.vgg.resolve_target(layer, arch))  # noqa: E731
  assert path("layer2", "resnet50")[-3:] == ("layer2.1", "layer2.2", "layer2")
  assert path("avgpool", "resnet50")[-2:] == ("layer4.1", "avgpool")
  assert path("avgpool", "googlenet")[-2:] == ("inception5a", "avgpool")
  assert path("inception4a", "googlenet")[-2:] == ("inception3b", "inception4a")
  assert path(25, "vgg16")[-2:] == ("conv4_3", "relu5_1")


def reference_trust(pooled_renders, pooled_photos, maps, path, k):
  """The README's path statistic, written from its definition with scipy's Spearman:
  pooled activations are {tap: (images, channels)} spatial means."""
  from scipy import stats

  def rho(a, b):
    value = stats.spearmanr(a, b).statistic
    return 0.0 if np.isnan(value) else value  # a constant row (documented as 0)

  found = {}
  for row, m in enumerate(maps):
    values = pooled_photos[path[-1]][:, m]
    top = [int(i) for i in np.argsort(-values, kind="stable")[:k]]
    rest = [i for i in range(len(values)) if i not in top]
    profile = []
    for tap in path:
      photos, render = pooled_photos[tap], pooled_renders[tap][row]
      render_top = np.mean([rho(render, photos[i]) for i in top])
      top_top = np.mean([rho(photos[i], photos[j]) for i in top for j in top if i != j])
      top_rest = np.mean([rho(photos[i], photos[j]) for i in top for j in rest])
      profile.append((render_top, top_top, top_rest))
    found[m] = {"objective": pooled_renders[path[-1]][row, m], "best_photo": values.max(),
                "top_photos": top, "profile": profile}
  return found


@pytest.mark.parametrize("arch", nets.CANONICAL_ARCHS)
def test_trust_numbers_equal_a_torch_and_scipy_computation(arch, converted, tmp_path):
  """`render --photos` on each canonical net, end to end: the recorded path, objectives,
  top photos, similarity profile and shift robustness equal the same statistics computed
  on the reference network (torchvision's, lucent's) with scipy (Spearman; the shifts
  as scipy's mirrored `ndimage.shift`), from the PNGs as saved. Tolerances: the
  Flax float32 network against the float64 reference is within 1e-5 of each tap's scale
  (test_net_<arch>); a pooled mean within 1e-4 relative, a Spearman mean within 1e-4
  (a channel pair that float32 swaps moves it by about 1e-6), a similarity within 2e-3
  (its reference gap is at least 0.05)."""
  from scipy import ndimage
  from skimage import data
  import torch

  from jaxviz import trust

  if arch == "inceptionv1":
    lucent_or_skip()
  _, safetensors = converted[arch]
  folder = tmp_path / "photos"
  folder.mkdir()
  for name in TRUST_PHOTOS:  # at the photos' input side already, so both sides read them as is
    image = np.asarray(getattr(data, name)())
    image = image if image.ndim == 2 else image[..., :3]
    Image.fromarray(image).convert("RGB").resize((224, 224), Image.BOX).save(
        folder / f"{name}.png")
  path, k, maps = TRUST_PATHS[arch], 3, [1, 3, 4]  # a map's row is not its index
  out = tmp_path / "r"
  record = json.loads(run_cli("render", "-l", path[-1], "-m", "1,3,4", "-w", safetensors, "-o",
                              out, *TINY, "--photos", folder, "--k", str(k), "--json").stdout)
  block = record["trust"]
  assert block["path"] == path and block["k"] == k
  # `jaxviz trust` on the directory (the arch read from its record) writes the same numbers
  again = json.loads(run_cli("trust", out, "--photos", folder, "--k", str(k), "-w", safetensors,
                             "--json").stdout)
  assert again["arch"] == arch and again["path"] == path
  assert json.loads((out / "render.json").read_text())["trust"]["maps"] == block["maps"]

  reference = importlib.import_module(f"jaxviz_convert.reference_{arch}")
  model = reference.reference_model(seed=0)
  table = nets.table(arch)

  def pooled(files):
    rows = {tap: [] for tap in path}
    for file in files:  # one image at a time: every tap of the whole network is kept
      rgb = file if isinstance(file, np.ndarray) else np.asarray(
          Image.open(file).convert("RGB"), np.float64) / 255.0
      normalised = ((rgb - np.array(table.MEAN)) / np.array(table.STD)).transpose(2, 0, 1)
      if arch == "googlenet":  # torchvision's GoogLeNet takes ImageNet-normalised input
        normalised = ((rgb - np.array(nets.IMAGENET_MEAN)) / np.array(nets.IMAGENET_STD)
                      ).transpose(2, 0, 1)
      taps = reference.reference_taps(model, torch.from_numpy(normalised[None].copy()))
      for tap in path:
        rows[tap].append(taps[tap][0].mean(axis=(0, 1)))
    return {tap: np.stack(found) for tap, found in rows.items()}

  photo_files = [folder / Path(photo["path"]).name for photo in block["photos"]]
  assert sorted(p.name for p in photo_files) == sorted(p.name for p in folder.iterdir())
  index = nets.resolve_tap(path[-1], arch).index
  render_files = [out / f"{index}_{m}.png" for m in maps]
  expected = reference_trust(pooled(render_files), pooled(photo_files), maps, path, k)
  defined = 0
  for m in maps:
    ours, theirs = block["maps"][str(m)], expected[m]
    assert ours["top_photos"] == theirs["top_photos"], m
    np.testing.assert_allclose(ours["objective"], theirs["objective"], rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(ours["best_photo"], theirs["best_photo"], rtol=1e-4, atol=1e-7)
    for tap, (render_top, top_top, top_rest) in zip(ours["profile"], theirs["profile"]):
      np.testing.assert_allclose([tap["render_top"], tap["top_top"], tap["top_rest"]],
                                 [render_top, top_top, top_rest], rtol=0, atol=1e-4)
      if top_top - top_rest >= trust.MIN_GAP + 1e-3:
        defined += 1
        np.testing.assert_allclose(tap["similarity"],
                                   (render_top - top_rest) / (top_top - top_rest),
                                   rtol=0, atol=2e-3)
  assert defined  # some tap of some map has a reference, so a similarity is compared
  robust = 0
  for m, file in zip(maps, render_files):
    rgb = np.asarray(Image.open(file).convert("RGB"), np.float64) / 255.0
    far = max(2, -(-rgb.shape[0] // 32))  # README: 1 px and 1/32 of the side, at least 2
    moved = [ndimage.shift(rgb, (down, right, 0), order=0, mode="mirror")
             for step in (1, far) for down, right in ((step, 0), (0, step), (-step, 0),
                                                      (0, -step))]
    objectives = pooled(moved)[path[-1]][:, m]
    robustness = block["maps"][str(m)]["shift_robustness"]
    if expected[m]["objective"] > 1e-6:
      robust += 1
      np.testing.assert_allclose(robustness, objectives.mean() / expected[m]["objective"],
                                 rtol=1e-3)
  assert robust  # some map is alive, so a shift robustness is compared


@pytest.mark.parametrize("arch", nets.CANONICAL_ARCHS)
def test_imagenet_is_the_published_file_in_torchs_hub_cache(arch, converted, monkeypatch,
                                                           empty_jaxviz_cache):
  """The real download path, served from where torch's hub caches the published file
  (where torchvision's loader, or lucent's for inceptionv1, puts it)."""
  import os

  import jaxviz_convert.published as published
  from jaxviz import app, fileio, weights as weights_lib

  converter = importlib.import_module(f"jaxviz_convert.{arch}")
  checkpoints = published.hub_dir() / "checkpoints"
  assert str(checkpoints).startswith(str(empty_jaxviz_cache.parent))  # TORCH_HOME isolated
  checkpoints.mkdir(parents=True)
  (checkpoints / os.path.basename(converter.IMAGENET_URL)).symlink_to(converted[arch][0])

  def no_network(*args, **kwargs):
    raise AssertionError("the cached file should have been used")

  monkeypatch.setattr(published, "_download", no_network)
  # The stand-in is not the published file: its name's hash is made its own (the check
  # itself is tested in test_weights).
  monkeypatch.setattr(published, "name_hash", lambda path: fileio.sha256_file(path)[:8])
  loaded = app.load_weights("imagenet", arch)
  assert loaded.arch == arch and loaded.label == "imagenet" and not loaded.is_random
  assert weights_lib.imagenet_cache_path(arch).is_file()
  expected = converter.categories()
  assert loaded.categories == (tuple(expected) if expected else None)


def test_published_addresses_and_classes_are_the_references(monkeypatch, tmp_path):
  """The addresses written out in jaxviz_convert are the ones torchvision's weight enums
  (and lucent, in test_net_inceptionv1) download, the class names the ones torchvision
  ships, and torch's hub directory is found by torch's own rule."""
  import torch
  import torchvision

  import jaxviz_convert.published as published
  from jaxviz_convert import googlenet, resnet50, torchvision_vgg

  enums = {"googlenet": torchvision.models.GoogLeNet_Weights,
           "resnet50": torchvision.models.ResNet50_Weights,
           **{arch: getattr(torchvision.models, f"VGG{arch[3:]}_Weights")
              for arch in torchvision_vgg.IMAGENET_URLS}}
  ours = {"googlenet": googlenet.IMAGENET_URL, "resnet50": resnet50.IMAGENET_URL,
          **torchvision_vgg.IMAGENET_URLS}
  assert ours == {arch: enum.IMAGENET1K_V1.url for arch, enum in enums.items()}
  for enum in enums.values():
    assert published.imagenet_categories() == list(enum.IMAGENET1K_V1.meta["categories"])
  for env in ({"TORCH_HOME": str(tmp_path / "th")}, {"XDG_CACHE_HOME": str(tmp_path / "x")},
              {}):
    for name in ("TORCH_HOME", "XDG_CACHE_HOME"):
      monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
      monkeypatch.setenv(name, value)
    if not env:
      monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert published.hub_dir() == Path(torch.hub.get_dir())


def test_redirected_relu_is_followed_by_default_and_can_be_switched_off():
  """lucent's InceptionV1 renders with RedirectedReLU's backward: `jaxviz.render` on the
  tap is `NetModel("inceptionv1")`; the option turns it into a plain ReLU's gradient,
  which changes the render."""
  weights = jaxviz.load_weights("random:3", arch="inceptionv1")
  schedule = recipes.Lucid(size0=32, steps=3)
  layer = jaxviz.render("mixed3a", [1], weights=weights, schedule=schedule, progress=False)
  objective = jaxviz.objectives.Channel("mixed3a")
  followed = jaxviz.render(jaxviz.NetModel("inceptionv1"), weights.params, objective, [1],
                           schedule=schedule, progress=False)
  plain = jaxviz.render(jaxviz.NetModel("inceptionv1", options=(("redirected_relu", False),)),
                        weights.params, objective, [1], schedule=schedule, progress=False)
  np.testing.assert_allclose(followed, layer, rtol=0, atol=1e-6)
  assert np.abs(plain - followed).max() > 1e-3


def test_the_torch_side_needs_lucent_only_for_lucents_reference_model(converted, tmp_path):
  """Without torch-lucent (most users), a state dict of any arch is still detected and
  converted, and lucent's file's address is known: only building lucent's own model
  (the tests' reference) imports lucent."""
  import subprocess
  import sys

  script = (
      "import sys; sys.modules['lucent'] = None\n"  # `import lucent` now fails
      "from jaxviz_convert import torch_weights, inceptionv1, reference_inceptionv1\n"
      f"print(torch_weights.convert_file({str(converted['resnet50'][0])!r}, "
      f"{str(tmp_path / 'r.safetensors')!r}), inceptionv1.IMAGENET_URL)\n"
      "try:\n  reference_inceptionv1.reference_model()\nexcept ImportError:\n"
      "  print('needs lucent')\n")
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split() == ["resnet50", "https://github.com/ProGamerGov/"
                                   "pytorch-old-tensorflow-models/raw/master/inception5h.pth",
                                   "needs", "lucent"]


@pytest.mark.parametrize("recipe", ["seed", "maco"])
def test_input_space_recipes_keep_imagenet_units_on_every_net(recipe):
  """The write-up's recipe and MACO optimise in the model's input space; on a network
  fed otherwise than ImageNet's normalisation (InceptionV1: rgb * 255 - 117, where the
  write-up's lr would move a pixel 58x less than on VGG and MACO's +-2.5 would be a
  flat grey) they work in ImageNet's units: a render equals that of the same network
  behind a function model that takes ImageNet-normalised input."""
  from jaxviz import ops

  arch, tap = "inceptionv1", "mixed3a"
  weights = jaxviz.load_weights("random:1", arch=arch)
  if recipe == "seed":
    schedule = recipes.Schedule(size0=32, scales=2, steps=3)
  else:
    magnitude = np.random.default_rng(0).uniform(0.5, 2, size=(3, 32, 17)).astype(np.float32)
    schedule = recipes.MacoRecipe(magnitude, steps=3, crop_side=64)
  ours = jaxviz.render(tap, [2], weights=weights, schedule=schedule, progress=False)
  network = jaxviz.NetModel(arch)

  def behind_imagenet_input(params, x):
    rgb = ops.denormalise(x)
    return network.features(params, ops.normalise(rgb, network.mean, network.std), [tap])

  theirs = jaxviz.render(behind_imagenet_input, weights.params, jaxviz.objectives.Channel(tap),
                         [2], schedule=schedule, mean=nets.IMAGENET_MEAN, std=nets.IMAGENET_STD,
                         progress=False)
  np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-4)


def test_inceptionv1_logits_render_at_224_px_and_are_refused_elsewhere(tmp_path):
  """Its logits exist for 224-255 px inputs only (lucent's reshape to 1024 features):
  a 224 px render runs (the `--preview` estimate, 56 px, does not stop it), a smaller
  one is refused in one line (a larger one, in one line when its program is traced:
  `Network`'s own check, which `test_net_inceptionv1` tests)."""
  logits = "softmax2_pre_activation_matmul"
  base = ["render", "--arch", "inceptionv1", "-w", "random", "-l", logits, "-m", "3"]
  record = json.loads(run_cli(*base, "--size0", "224", "--scales", "1", "--steps", "1",
                              "-o", tmp_path / "ok", "--json").stdout)
  assert record["files"] == {"3": f"{nets.resolve_tap(logits, 'inceptionv1').index}_3.png"}
  line = error_line(run_cli(*base, "-o", tmp_path / "small", expect_exit=1))
  assert_names_all(line, "56", logits, "224")

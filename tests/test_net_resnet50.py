"""The Flax ResNet-50 against torchvision's, live, with the same (seeded random) weights,
and what a torch hook reads at the taps a Bottleneck changes in place.

torchvision's `resnet50()` runs in float64 as the exact side, fed ImageNet-normalised
images, its taps read by cloning hooks (`jaxviz_convert.reference_resnet50.reference_taps`);
the Flax network gets the same images NHWC. Every tap, the logits included (182), is
compared at 64 px (layer4 is 2x2 there) in float32 and in float64, at precision
"highest" (on a GPU "default" is TF32). Tolerance: max |jax - torch| / max |torch|
per tap, <= 1e-5 in float32 (torch's own float32 forward of this model is off by
4.6e-6 at worst, see `reference_model`) and 1e-10 in float64.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import jaxviz_convert.resnet50 as converter
import jaxviz_convert.reference_resnet50 as reference
import jaxviz_convert.torch_weights as torch_weights
from jaxviz.errors import JaxvizError
from jaxviz.nets import resnet50 as net
from jaxviz.nets import resnet50_table as table

from net_parity import (assert_needed_modules_suffice, assert_taps_match, converted_params,
                        float64_params, rgb, shapes_in_order)

FLOAT32_TOLERANCE = 1e-5
FLOAT64_TOLERANCE = 1e-10
TAP_NAMES = [layer.name for layer in table.taps()]
TAPS = {layer.name: layer for layer in table.taps()}
SIDE = 64


def torch_input(images: np.ndarray) -> torch.Tensor:
  return reference.imagenet_normalise(torch.from_numpy(images))


def jax_input(images: np.ndarray) -> np.ndarray:
  return (images.transpose(0, 2, 3, 1) - np.array(table.MEAN)) / np.array(table.STD)


@functools.partial(jax.jit, static_argnames="stop_at")
def activations(params, x, stop_at=None):
  return net.Network(precision="highest", stop_at=stop_at).apply({"params": params}, x)


@pytest.fixture(scope="module")
def torch_model() -> torch.nn.Module:
  return reference.reference_model(seed=0)


@pytest.fixture(scope="module")
def params32(torch_model):
  return converted_params(torch_model, "resnet50")


@pytest.fixture(scope="module")
def expected(torch_model) -> dict[str, np.ndarray]:
  return reference.reference_taps(torch_model, torch_input(rgb(SIDE)))


@pytest.fixture(scope="module")
def ours32(params32) -> dict[str, np.ndarray]:
  out = activations(params32, jnp.asarray(jax_input(rgb(SIDE)), jnp.float32))
  return {name: np.asarray(value) for name, value in out.items()}


def test_every_tap_matches_torchvision_in_float32(ours32, expected):
  assert ours32["fc"].dtype == np.float32
  worst = assert_taps_match(ours32, expected, FLOAT32_TOLERANCE, TAP_NAMES)
  print(f"float32 {SIDE}px: worst tap {worst:.2e}")


def test_every_tap_matches_torchvision_in_float64(torch_model, expected):
  with jax.enable_x64(True):
    ours = activations(float64_params(torch_model, converter.weight_table()),
                       jnp.asarray(jax_input(rgb(SIDE))))
    assert ours["fc"].dtype == jnp.float64
    worst = assert_taps_match(ours, expected, FLOAT64_TOLERANCE, TAP_NAMES)
  print(f"float64 {SIDE}px: worst tap {worst:.2e}")


# (torch module a lucent-style hook is put on, the jaxviz tap it then holds)
STORING_HOOK_READS = [
    ("bn1", "relu"),
    ("layer1.0.bn1", "layer1.0.relu1"),
    ("layer2.0.bn2", "layer2.0.relu2"),
    ("layer3.2.bn3", "layer3.2"),  # the in-place add, then the in-place ReLU
    ("layer3.2.relu", "layer3.2"),  # one module, three calls: the last stays
    ("layer4.0.downsample.1", "layer4.0.downsample.1"),  # not changed in place
]


@pytest.mark.parametrize("module, reads", STORING_HOOK_READS)
def test_what_a_storing_torch_hook_reads_is_as_the_table_says(torch_model, expected,
                                                              module, reads):
  kept = reference.storing_hook_reads(torch_model, torch_input(rgb(SIDE)), module)
  np.testing.assert_array_equal(kept, expected[reads])
  if module != reads:
    # jaxviz's tap of that name is another value, and its note names what the hook reads
    tap = module if module in TAPS else f"{module}1"
    assert not np.array_equal(expected[tap], kept)
    if tap in TAPS and tap == module:
      assert reads in TAPS[module].what and "uncloned" in TAPS[module].what


def test_in_place_taps_are_what_their_names_say(expected):
  bn3, add, out = expected["layer3.2.bn3"], expected["layer3.2.add"], expected["layer3.2"]
  identity = expected["layer3.1"]  # layer3.2 has no downsample: its identity is its input
  np.testing.assert_allclose(add, bn3 + identity, rtol=0, atol=1e-12)
  np.testing.assert_array_equal(out, np.maximum(add, 0))
  assert bn3.min() < 0 and add.min() < 0  # pre-ReLU values really are
  assert expected["layer3.2.bn1"].min() < 0
  np.testing.assert_array_equal(expected["layer3.2.relu1"],
                                np.maximum(expected["layer3.2.bn1"], 0))
  np.testing.assert_array_equal(expected["layer3"], expected["layer3.5"])


def test_param_table_is_the_flax_modules_and_the_weight_table_covers_torchvision(torch_model):
  assert net.flax_param_shapes() == table.param_shapes()
  state_dict = torch_model.state_dict()
  rows = converter.weight_table()
  torch_keys = [torch_key for torch_key, _, _ in rows]
  assert sorted(torch_keys) == sorted(k for k in state_dict if "num_batches_tracked" not in k)
  flax_keys = [flax_key for _, flax_key, _ in rows]
  assert flax_keys == list(table.param_shapes())  # one order: torchvision's
  for torch_key, flax_key, transform in rows:
    assert transform(state_dict[torch_key].numpy()).shape == table.param_shapes()[flax_key]
  found = {key: tuple(value.shape) for key, value in state_dict.items()}
  assert torch_weights.mismatch(found, "resnet50") is None
  assert torch_weights.mismatch({k: v for k, v in found.items() if k != "layer2.0.bn3.bias"},
                                "resnet50")
  assert torch_weights.mismatch({**found, "layer1.0.conv2.weight": (64, 64, 1, 1)},
                                "resnet50")
  learnable = sum(int(np.prod(shape)) for key, shape in table.param_shapes().items()
                  if not key.endswith((".mean", ".var")))
  assert learnable == reference.WEIGHTS.meta["num_params"] == 25557032
  assert {layer.name: layer.channels for layer in table.taps()}["layer3.2"] == 1024


def test_every_torchvision_module_is_a_tap_but_the_block_relus():
  model = torchvision.models.resnet50()
  modules = {name for name, _ in model.named_modules() if name}
  block_relus = {f"{block.path}.relu" for block in table.blocks()}
  assert modules - set(TAP_NAMES) == block_relus
  extras = {name for name in TAP_NAMES if name.endswith((".relu1", ".relu2", ".add"))}
  assert set(TAP_NAMES) - modules == extras and len(extras) == 3 * 16


@pytest.mark.parametrize("side", [table.MIN_SIDE, 67])
def test_output_side_is_each_taps_computed_side(side, torch_model):
  ours, order = shapes_in_order(net.Network, net.INIT_SIDE, side)
  assert order == TAP_NAMES
  theirs = reference.reference_taps(torch_model, torch_input(rgb(side, count=1)))
  for layer in table.taps():
    shape = (1, layer.output_side(side), layer.output_side(side), layer.channels)
    assert ours[layer.name].shape == theirs[layer.name].shape == shape, layer.name


@pytest.mark.parametrize("tap", ["bn1", "layer1.0.add", "layer2.0.downsample.0",
                                 "layer3.1.relu2", "layer4"])
def test_needed_modules_suffice(tap, params32, ours32):
  x = jnp.asarray(jax_input(rgb(SIDE)), jnp.float32)
  assert_needed_modules_suffice(activations, table, params32, x, tap, ours32[tap])


def test_an_unknown_tap_is_refused():
  with pytest.raises(JaxvizError, match="layer3.2.relu"):
    jax.eval_shape(net.Network(stop_at="layer3.2.relu").init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  with pytest.raises(KeyError):
    table.needed_modules("layer3.2.relu")


def test_random_module_draws_torchvisions_init():
  key = jax.random.key(3)
  torch.manual_seed(0)
  fresh = dict(torchvision.models.resnet50().state_dict())
  shapes = table.param_shapes()
  for module, path in (("conv1", "conv1"), ("layer1_0.conv2", "layer1.0.conv2"),
                       ("layer3_0.downsample_0", "layer3.0.downsample.0"),
                       ("layer4_2.conv3", "layer4.2.conv3")):
    drawn = net.random_module(key, module)
    assert set(drawn) == {"kernel"}
    ours = drawn["kernel"]
    assert ours.dtype == np.float32 and ours.shape == shapes[f"{module}.kernel"]
    theirs = fresh[f"{path}.weight"].numpy()
    assert abs(ours.std() / theirs.std() - 1) < 0.1, module
    assert abs(ours.mean()) < 0.1 * ours.std()
  fc = net.random_module(key, "fc")
  bound = 1 / np.sqrt(table.FC_INPUTS)
  for leaf, torch_leaf in (("kernel", "weight"), ("bias", "bias")):
    ours, theirs = fc[leaf], fresh[f"fc.{torch_leaf}"].numpy()
    assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
    assert abs(ours.std() / theirs.std() - 1) < 0.1
  norm = net.random_module(key, "layer2_1.bn2")
  for leaf, torch_leaf in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                           ("var", "running_var")):
    np.testing.assert_array_equal(norm[leaf], fresh[f"layer2.1.bn2.{torch_leaf}"].numpy())
  drawn = net.random_module(key, "layer2_1.conv1")["kernel"]
  np.testing.assert_array_equal(drawn, net.random_module(key, "layer2_1.conv1")["kernel"])
  assert not np.array_equal(drawn, net.random_module(key, "layer2_2.conv1")["kernel"])

"""The Flax GoogLeNet against torchvision's, live, with the same (seeded random) weights.

torchvision's `GoogLeNet(transform_input=True, aux_logits=False)` runs in float64 as
the exact side, fed the ImageNet-normalised images (its `transform_input` re-maps
them), its taps read by cloning forward hooks; the Flax network gets the same rgb
images as (rgb - MEAN) / STD. Every tap, the logits included (222), is compared at
64 px in float32 and in float64, at precision "highest" (on a GPU "default" is TF32).
Tolerance: max |jax - torch| / max |torch| per tap, <= 2e-5 in float32 (not the 1e-5
of the other networks) and 1e-10 in float64. 1e-5 is float32's own accuracy on this
network: each BasicConv2d adds 3e-7 to 1.4e-6 of error (a float32 conv, then the batch
norm subtracting a running mean up to 4x the conv output's spread) and 22 of them add
up; torch's own float32 forward of `reference_model` is off by 7e-6 to 1.1e-5 at
inception5b (measured: seeds 0-3, two image draws), jaxviz's by 1.0e-5 here.
The float64 comparison is the exactness check.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torchvision

import jaxviz_convert.googlenet as converter
import jaxviz_convert.reference_googlenet as reference
import jaxviz_convert.torch_weights as torch_weights
from jaxviz.errors import JaxvizError
from jaxviz.nets import googlenet as net
from jaxviz.nets import googlenet_table as table

from conftest import relative_error
from net_parity import (assert_needed_modules_suffice, assert_taps_match, converted_params,
                        float64_params, rgb, shapes_in_order)

FLOAT32_TOLERANCE = 2e-5  # see the module docstring
FLOAT64_TOLERANCE = 1e-10
TAP_NAMES = [layer.name for layer in table.taps()]
SIDE = 64


def torch_input(images: np.ndarray) -> torch.Tensor:
  """What the reference is fed: ImageNet-normalised, NCHW."""
  return reference.imagenet_normalise(torch.from_numpy(images))


def jax_input(images: np.ndarray) -> np.ndarray:
  """What jaxviz feeds the Flax network: (rgb - MEAN) / STD, NHWC."""
  return ((images.transpose(0, 2, 3, 1) - np.array(table.MEAN)) / np.array(table.STD))


@functools.partial(jax.jit, static_argnames="stop_at")
def activations(params, x, stop_at=None):
  return net.Network(precision="highest", stop_at=stop_at).apply({"params": params}, x)


@pytest.fixture(scope="module")
def torch_model() -> torch.nn.Module:
  return reference.reference_model(seed=0)


@pytest.fixture(scope="module")
def params32(torch_model):
  return converted_params(torch_model, "googlenet")


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


def test_mean_and_std_are_what_transform_input_makes_of_imagenet_input(torch_model):
  images = rgb(8)
  remapped = torch_model._transform_input(torch_input(images)).permute(0, 2, 3, 1).numpy()
  assert relative_error(jax_input(images), remapped) <= 1e-15
  # ImageNet's own normalisation is not it: the transform matters.
  assert relative_error(torch_input(images).permute(0, 2, 3, 1).numpy(), remapped) > 0.1


def test_an_uncloned_bn_hook_reads_the_relu_as_the_note_says(torch_model, expected):
  """BasicConv2d's in-place ReLU: the `.bn` taps are pre-ReLU only because the hook
  clones; one that keeps the tensor (lucent's) holds the BasicConv2d's output."""
  kept = {}
  handle = torch_model.conv3.bn.register_forward_hook(
      lambda module, args, output: kept.setdefault("bn", output))
  with torch.no_grad():
    torch_model(torch_input(rgb(SIDE)))
  handle.remove()
  np.testing.assert_array_equal(kept["bn"].permute(0, 2, 3, 1).numpy(), expected["conv3"])
  assert expected["conv3.bn"].min() < 0
  assert "conv3" in {layer.name: layer for layer in table.taps()}["conv3.bn"].what


def test_param_table_is_the_flax_modules_and_the_weight_table_covers_torchvision(torch_model):
  assert net.flax_param_shapes() == table.param_shapes()
  state_dict = torch_model.state_dict()
  rows = converter.weight_table()
  torch_keys = [torch_key for torch_key, _, _ in rows]
  assert sorted(torch_keys) == sorted(k for k in state_dict if "num_batches_tracked" not in k)
  flax_keys = [flax_key for _, flax_key, _ in rows]
  assert len(flax_keys) == len(set(flax_keys)) and set(flax_keys) == set(table.param_shapes())
  for torch_key, flax_key, transform in rows:
    assert transform(state_dict[torch_key].numpy()).shape == table.param_shapes()[flax_key]
  # The published file has the auxiliary heads (and batch norm counters): ignored.
  published = torchvision.models.GoogLeNet(aux_logits=True, init_weights=False).state_dict()
  found = {key: tuple(value.shape) for key, value in published.items()}
  assert any(key.startswith("aux1.") for key in found)
  assert torch_weights.mismatch(found, "googlenet") is None
  assert torch_weights.mismatch({**found, "aux3.fc.weight": (1, 1)}, "googlenet")
  assert torch_weights.mismatch({k: v for k, v in found.items() if k != "conv1.bn.running_var"},
                                "googlenet")
  # torchvision's count of learnable parameters (running statistics are buffers)
  learnable = sum(int(np.prod(shape)) for key, shape in table.param_shapes().items()
                  if not key.endswith((".mean", ".var")))
  assert learnable == reference.WEIGHTS.meta["num_params"] == 6624904
  assert table.taps()[-1].name == "fc" and table.taps()[-1].kind == "dense"
  assert {layer.name: layer.channels for layer in table.taps()}["inception4a"] == 512


def test_every_torchvision_module_is_a_tap_but_dropout():
  model = torchvision.models.GoogLeNet(aux_logits=False, init_weights=False)
  modules = {name for name, _ in model.named_modules() if name}
  assert modules - set(TAP_NAMES) == {"dropout"}
  assert set(TAP_NAMES) - modules == set()


@pytest.mark.parametrize("side", [table.MIN_SIDE, 67])
def test_output_side_is_each_taps_computed_side(side, torch_model):
  ours, order = shapes_in_order(net.Network, net.INIT_SIDE, side)
  assert order == TAP_NAMES
  theirs = reference.reference_taps(torch_model, torch_input(rgb(side, count=1)))
  for layer in table.taps():
    shape = (1, layer.output_side(side), layer.output_side(side), layer.channels)
    assert ours[layer.name].shape == theirs[layer.name].shape == shape, layer.name


def test_the_smallest_input_is_torchvisions():
  side = table.MIN_SIDE
  assert table.taps()[-1].min_input_side == side == reference.WEIGHTS.meta["min_size"][0]
  assert table.taps()[-1].output_side(side - 1) == 0
  model = torchvision.models.GoogLeNet(aux_logits=False, init_weights=False).eval()
  with pytest.raises(RuntimeError, match="too small"):
    with torch.no_grad():
      model(torch.zeros(1, 3, side - 1, side - 1))


@pytest.mark.parametrize("tap", ["conv1.bn", "maxpool2", "inception3a.branch4.0",
                                 "inception4b.branch3.1.conv", "inception4e"])
def test_needed_modules_suffice(tap, params32, ours32):
  x = jnp.asarray(jax_input(rgb(SIDE)), jnp.float32)
  assert_needed_modules_suffice(activations, table, params32, x, tap, ours32[tap])


def test_an_unknown_tap_is_refused():
  with pytest.raises(JaxvizError, match="inception3a.branch5"):
    jax.eval_shape(net.Network(stop_at="inception3a.branch5").init, jax.random.key(0),
                   jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  with pytest.raises(KeyError):
    table.needed_modules("inception3a.branch5")


def test_random_module_draws_torchvisions_init():
  key = jax.random.key(3)
  torch.manual_seed(0)
  fresh = dict(torchvision.models.GoogLeNet(aux_logits=False, init_weights=True).state_dict())
  shapes = table.param_shapes()
  for module, path in (("conv1.conv", "conv1.conv"),
                       ("inception4a.branch3_1.conv", "inception4a.branch3.1.conv"),
                       ("inception5b.branch1.conv", "inception5b.branch1.conv"), ("fc", "fc")):
    drawn = net.random_module(key, module)
    assert set(drawn) == ({"kernel", "bias"} if module == "fc" else {"kernel"})
    ours = drawn["kernel"]
    assert ours.dtype == np.float32 and ours.shape == shapes[f"{module}.kernel"]
    theirs = fresh[f"{path}.weight"].numpy()
    assert abs(ours.std() / theirs.std() - 1) < 0.1 and abs(theirs.std() / 0.01 - 1) < 0.1
    assert abs(ours.mean()) < 0.1 * ours.std()
  bias, theirs = net.random_module(key, "fc")["bias"], fresh["fc.bias"].numpy()
  bound = 1 / np.sqrt(table.FC_INPUTS)
  assert np.abs(bias).max() <= bound and np.abs(theirs).max() <= bound
  assert abs(bias.std() / theirs.std() - 1) < 0.1
  norm = net.random_module(key, "inception4a.branch3_1.bn")
  for leaf, torch_leaf in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                           ("var", "running_var")):
    assert norm[leaf].dtype == np.float32
    np.testing.assert_array_equal(norm[leaf],
                                  fresh[f"inception4a.branch3.1.bn.{torch_leaf}"].numpy())
  # a module's draw is its own: the same every time, not another's of the same shape
  drawn = net.random_module(key, "inception4b.branch1.conv")["kernel"]
  np.testing.assert_array_equal(drawn, net.random_module(key, "inception4b.branch1.conv")["kernel"])
  assert not np.array_equal(drawn, net.random_module(key, "inception4c.branch1.conv")["kernel"])

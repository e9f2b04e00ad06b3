"""The Flax InceptionV1 against lucent's, live, with the same (seeded random) weights.

lucent's module runs in float64 as the exact side, its taps read by forward hooks as
lucent's render_vis reads them. Every tap is compared at 64 px (float32 and float64)
and at 224 px (float32: every tap and the logits, which exist only there).
Tolerance: max |jax - torch| / max |torch| per tap, <= 1e-5 in float32 and 1e-10
in float64; the RedirectedReLU gradient likewise to 1e-10 in float64.
"""

from __future__ import annotations

import functools
import importlib

import flax.errors
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import jaxviz_convert.inceptionv1 as converter
import jaxviz_convert.reference_inceptionv1 as reference
from jaxviz.errors import JaxvizError
from jaxviz.nets import inceptionv1 as net
from jaxviz.nets import inceptionv1_table as table
from jaxviz_convert import torch_weights

from conftest import lucent_or_skip, relative_error
from net_parity import assert_taps_match, converted_params, float64_params

lucent_or_skip(allow_module_level=True)  # the reference is lucent's own module

FLOAT32_TOLERANCE = 1e-5
FLOAT64_TOLERANCE = 1e-10
TAP_NAMES = [layer.name for layer in table.taps()]


def images(side: int, count: int = 2, seed: int = 0) -> np.ndarray:
  """(count, 3, side, side) float64, rgb in [0, 1] normalised as lucent feeds it."""
  rgb = np.random.default_rng(seed + side).uniform(size=(count, 3, side, side))
  mean, std = np.array(table.MEAN)[:, None, None], np.array(table.STD)[:, None, None]
  return (rgb - mean) / std


@functools.partial(jax.jit, static_argnames=("stop_at", "redirected_relu"))
def activations(params, x, stop_at=None, redirected_relu=True):
  return net.Network(stop_at=stop_at, redirected_relu=redirected_relu).apply(
      {"params": params}, x)


@pytest.fixture(scope="module")
def lucent_model() -> torch.nn.Module:
  return reference.reference_model(seed=0)


@pytest.fixture(scope="module")
def params32(lucent_model):
  return converted_params(lucent_model, "inceptionv1")


def params64(model: torch.nn.Module):
  return float64_params(model, converter.weight_table())


@pytest.mark.parametrize("side", [64, 224])
def test_every_tap_matches_lucent_in_float32(side, lucent_model, params32):
  x = images(side)
  expected = reference.reference_taps(lucent_model, torch.from_numpy(x))
  ours = activations(params32, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32))
  assert len(expected) == len(TAP_NAMES) - (side != 224)  # the logits only at 224
  worst = assert_taps_match(ours, expected, FLOAT32_TOLERANCE)
  print(f"float32 {side}px: worst tap {worst:.2e}")


def test_every_tap_matches_lucent_in_float64(lucent_model):
  x = images(64)
  expected = reference.reference_taps(lucent_model, torch.from_numpy(x))
  with jax.enable_x64(True):
    ours = activations(params64(lucent_model), jnp.asarray(x.transpose(0, 2, 3, 1)))
    assert ours["mixed5b"].dtype == jnp.float64
    worst = assert_taps_match(ours, expected, FLOAT64_TOLERANCE)
  print(f"float64 64px: worst tap {worst:.2e}")


def torch_gradient(model, x: np.ndarray, tap: str, channel: int) -> np.ndarray:
  """d mean(tap[:, channel]) / d input through lucent's autograd, NHWC."""
  inputs = torch.from_numpy(x).requires_grad_(True)
  found = {}

  class Stop(Exception):
    pass

  def hook(module, args, output):
    found["tap"] = output
    raise Stop  # the rest of the network is not needed (and undefined at this side)

  handle = model.get_submodule(tap).register_forward_hook(hook)
  try:
    model(inputs)
  except Stop:
    pass
  finally:
    handle.remove()
  found["tap"][:, channel].mean().backward()
  return inputs.grad.permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("redirected", [True, False])
def test_gradient_matches_lucents_relu_in_float64(redirected, lucent_model):
  """RedirectedReLU (lucent's default) passes 0.1 of the gradient below zero; the plain
  ReLU none. Both against lucent's autograd, through every kind of tap up to mixed4a."""
  model = reference.reference_model(seed=0, redirected_relu=redirected)
  tap, x = "mixed4a", images(40, count=1)
  # a channel alive at this input: a dead one has a zero gradient under the plain ReLU
  channel = int(reference.reference_taps(model, torch.from_numpy(x))[tap].mean((0, 1, 2)).argmax())
  expected = torch_gradient(model, x, tap, channel)

  def objective(params, inputs, redirected_relu):
    out = net.Network(stop_at=tap, redirected_relu=redirected_relu).apply({"params": params},
                                                                          inputs)
    return out[tap][..., channel].mean()

  grad = jax.jit(jax.grad(objective, argnums=1), static_argnums=2)
  with jax.enable_x64(True):
    params = params64(model)
    inputs = jnp.asarray(x.transpose(0, 2, 3, 1))
    ours = np.asarray(grad(params, inputs, redirected))
    other = np.asarray(grad(params, inputs, not redirected))
  error = relative_error(ours, expected)
  print(f"gradient, redirected={redirected}: {error:.2e}")
  assert error <= FLOAT64_TOLERANCE
  assert relative_error(other, expected) > 1e-3  # the two ReLUs' gradients do differ here


def test_param_table_is_the_flax_modules_and_the_weight_table_covers_lucent(lucent_model):
  assert net.flax_param_shapes() == table.param_shapes()
  state_dict = lucent_model.state_dict()
  rows = converter.weight_table()
  assert sorted(torch_key for torch_key, _, _ in rows) == sorted(state_dict)  # none ignored
  flax_keys = [flax_key for _, flax_key, _ in rows]
  assert len(flax_keys) == len(set(flax_keys)) and set(flax_keys) == set(table.param_shapes())
  for torch_key, flax_key, transform in rows:
    assert transform(state_dict[torch_key].numpy()).shape == table.param_shapes()[flax_key]
  found = {key: tuple(value.shape) for key, value in state_dict.items()}
  assert torch_weights.mismatch(found, "inceptionv1") is None
  assert torch_weights.mismatch({**found, "softmax2.weight": (1008,)}, "inceptionv1")
  assert table.taps()[-1].name == table.LOGITS and table.taps()[-1].kind == "dense"
  assert {layer.name: layer.channels for layer in table.taps()}["mixed4a"] == 508


def test_every_lucent_module_is_a_tap_but_softmax2():
  """What lucent's render_vis can address (its `_modules`), and nothing it cannot."""
  model = reference.lucent_module().InceptionV1()
  assert set(model._modules) - set(TAP_NAMES) == {"softmax2"}
  assert set(TAP_NAMES) - set(model._modules) == set()


@pytest.mark.parametrize("side", [67, 255])
def test_output_side_is_each_taps_computed_side(side):
  x = jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32)
  params = jax.eval_shape(net.Network().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  order = []

  def run(p, x):  # the dict as the module returns it: jax's outputs come sorted by key
    out = net.Network().apply(p, x)
    order.extend(out)
    return out

  out = jax.eval_shape(run, params, x)
  assert order == TAP_NAMES[: len(order)]  # lucent's forward order
  assert (table.LOGITS in out) == (side == 255)  # mixed5b is 7x7 at 224..255 px only
  for layer in table.taps()[: len(out)]:
    assert out[layer.name].shape[1:] == (layer.output_side(side),) * 2 + (layer.channels,), (
        layer.name)


def test_logits_are_refused_where_lucent_has_none():
  params = jax.eval_shape(net.Network().init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))
  for side in (64, 256):
    with pytest.raises(JaxvizError, match="224-255 px"):
      jax.eval_shape(lambda p, x: net.Network(stop_at=table.LOGITS).apply(p, x), params,
                     jax.ShapeDtypeStruct((1, side, side, 3), jnp.float32))
  assert table.taps()[-1].min_input_side == 224


@pytest.mark.parametrize("tap", ["maxpool0", "mixed3a_pool", "mixed4a_5x5"])
def test_needed_modules_suffice(tap, params32):
  x = jnp.asarray(images(48).transpose(0, 2, 3, 1), jnp.float32)
  needed = table.needed_modules(tap)
  assert list(needed) == [m for m in table.module_names() if m in needed]  # network order
  full = activations(params32, x, stop_at="mixed4b")[tap]
  only = activations({module: params32[module] for module in needed}, x, stop_at=tap)
  assert set(only) == set(TAP_NAMES[: TAP_NAMES.index(tap) + 1])
  np.testing.assert_array_equal(only[tap], full)
  if len(needed) > 1:  # one module fewer does not run
    with pytest.raises(flax.errors.ScopeParamNotFoundError):
      activations({module: params32[module] for module in needed[:-1]}, x, stop_at=tap)


def test_random_module_draws_torchs_init(lucent_model):
  key = jax.random.key(3)
  fresh = reference.lucent_module().InceptionV1()  # torch's own default init
  torch_params = dict(fresh.named_parameters())
  for module in ("conv2d0_pre_relu_conv", "mixed4a_5x5_pre_relu_conv",
                 "mixed5b_1x1_pre_relu_conv", table.LOGITS):
    drawn = net.random_module(key, module)
    shapes = table.param_shapes()
    for leaf, torch_leaf in (("kernel", "weight"), ("bias", "bias")):
      ours = drawn[leaf]
      assert ours.dtype == np.float32 and ours.shape == shapes[f"{module}.{leaf}"]
      theirs = torch_params[f"{module}.{torch_leaf}"].detach().numpy()
      bound = 1 / np.sqrt(np.prod(shapes[f"{module}.kernel"][:-1]))
      assert np.abs(ours).max() <= bound and np.abs(theirs).max() <= bound
      if ours.size >= 1000:
        assert abs(ours.std() / theirs.std() - 1) < 0.1, (module, leaf)
        assert abs(ours.mean()) < 0.1 * ours.std()
      else:  # a small bias: its values spread over the same interval
        assert np.abs(ours).max() > 0.7 * bound
  # a module's draw is its own: the same every time, not another's of the same shape
  drawn = net.random_module(key, "mixed4b_5x5_pre_relu_conv")["kernel"]
  again = net.random_module(key, "mixed4b_5x5_pre_relu_conv")["kernel"]
  np.testing.assert_array_equal(drawn, again)
  assert not np.array_equal(drawn, net.random_module(key, "mixed4c_5x5_pre_relu_conv")["kernel"])


def test_lrn_is_torchs():
  """The local response norm alone, at a scale where it is far from the identity."""
  x = np.random.default_rng(5).normal(scale=300.0, size=(2, 20, 3, 3))
  expected = torch.nn.functional.local_response_norm(
      torch.from_numpy(x), size=9, alpha=9.99999974738e-05, beta=0.5, k=1)
  with jax.enable_x64(True):
    ours = np.asarray(net.local_response_norm(jnp.asarray(x.transpose(0, 2, 3, 1))))
  assert relative_error(ours, expected.permute(0, 2, 3, 1).numpy()) <= FLOAT64_TOLERANCE
  assert relative_error(x.transpose(0, 2, 3, 1), expected.permute(0, 2, 3, 1).numpy()) > 0.1


def test_redirected_relu_is_lucents_at_zero_and_below():
  """Forward a ReLU; backward 0.1 of the gradient where x < 0, all of it at x == 0 (lucent's
  condition is `input_tensor < 0`), where a plain ReLU passes none."""
  redirected = importlib.import_module("lucent.modelzoo.inceptionv1.helper_layers").RedirectedReLU
  x, weights = np.array([-2.0, -0.5, 0.0, 0.5, 3.0]), np.array([1.0, 2.0, 3.0, 4.0, 5.0])
  inputs = torch.from_numpy(x).requires_grad_(True)
  forward = redirected.apply(inputs)
  (forward * torch.from_numpy(weights)).sum().backward()
  with jax.enable_x64(True):
    ours, grad = jax.value_and_grad(lambda v: (net.redirected_relu(v) * weights).sum())(x)
    ours, grad = float(ours), np.asarray(grad)
    plain = np.asarray(jax.grad(lambda v: (jax.nn.relu(v) * weights).sum())(x))
  assert ours == float((forward.detach() * torch.from_numpy(weights)).sum())
  np.testing.assert_array_equal(grad, inputs.grad.numpy())
  np.testing.assert_array_equal(grad, [0.1, 0.2, 3.0, 4.0, 5.0])
  assert plain[2] == 0.0


def test_the_download_address_is_lucents():
  """Written out so that converting and downloading need no lucent; lucent's is the truth."""
  assert converter.IMAGENET_URL == reference.lucent_module().model_urls["inceptionv1"]

"""The Flax VGG16 against torchvision's, live, with the same (seeded random) weights.

Torch runs in float64 as the exact side; JAX runs in float32 under jit.
Tolerance: max |jax - torch| / max |torch| <= 1e-5 for every layer.
"""

from __future__ import annotations

import functools

import jax
import numpy as np
import pytest
import torch

import jaxviz_convert.torchvision_vgg as torchvision_vgg
from jaxviz import layers as layers_lib
from jaxviz import vgg

from conftest import relative_error

TOLERANCE = 1e-5


def torch_activations(model: torch.nn.Module, images_nchw: np.ndarray) -> dict[str, np.ndarray]:
  """Every features layer's output and the logits, named as jaxviz names them."""
  out = {}
  x = torch.from_numpy(images_nchw).double()
  with torch.no_grad():
    for layer, module in zip(layers_lib.feature_layers("vgg16"), model.features):
      x = module(x)
      # Copy: torchvision's ReLU(inplace=True) would overwrite the conv output.
      out[layer.name] = x.permute(0, 2, 3, 1).numpy().copy()
    x = torch.flatten(model.avgpool(x), 1)
    out["logits"] = model.classifier(x).numpy()
  return out


@functools.partial(jax.jit, static_argnames="stop_at")
def jax_activations(params, images, stop_at=None):
  return vgg.activations(params, images, stop_at=stop_at)


@pytest.mark.parametrize("side", [224, 67])
def test_every_layer_and_logits_match_torchvision(side, torch_vgg16, vgg16_weights):
  images = np.random.default_rng(side).normal(size=(2, 3, side, side)).astype(np.float32)
  expected = torch_activations(torch_vgg16, images)
  ours = jax_activations(vgg16_weights.params, images.transpose(0, 2, 3, 1))

  assert len(expected) == 32  # 31 feature layers and the logits
  errors = {name: relative_error(ours[name], expected[name]) for name in expected}
  worst = max(errors, key=errors.get)
  assert errors[worst] <= TOLERANCE, f"{worst}: {errors[worst]:.2e}"
  for name in expected:
    assert ours[name].shape == expected[name].shape, name


def test_stop_at_runs_only_the_layers_needed(vgg16_weights):
  images = np.zeros((1, 32, 32, 3), np.float32)
  layer = layers_lib.resolve_layer("conv3_1")
  out = jax_activations(vgg16_weights.params, images, stop_at=layer.index)
  assert set(out) == {l.name for l in layers_lib.feature_layers()[: layer.index + 1]}
  truncated = vgg.truncate_params(vgg16_weights.params, layer)
  assert set(truncated) == {"conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1"}
  np.testing.assert_array_equal(vgg.layer_activation(truncated, images, layer), out["conv3_1"])


def test_fc6_reorder_turns_nchw_flatten_into_nhwc_flatten(torch_vgg16):
  fc6 = torch_vgg16.classifier[0].weight.detach().numpy()
  pool5 = np.random.default_rng(1).normal(size=(2, 512, 7, 7))
  torch_order = pool5.reshape(2, -1) @ fc6.T
  nhwc_flat = pool5.transpose(0, 2, 3, 1).reshape(2, -1)
  np.testing.assert_allclose(nhwc_flat @ torchvision_vgg.fc6_to_kernel(fc6), torch_order,
                             rtol=1e-10, atol=1e-10)
  # Without the reorder the same product is wrong, so the check above can fail.
  assert relative_error(nhwc_flat @ fc6.T, torch_order) > 0.1


def test_adaptive_pool_matrix_matches_torch():
  for in_size in (1, 2, 5, 7, 9, 14):
    x = torch.arange(in_size, dtype=torch.float64)[None, None]
    expected = torch.nn.functional.adaptive_avg_pool1d(x, 7)[0, 0].numpy()
    np.testing.assert_allclose(vgg.adaptive_avg_pool_matrix(in_size, 7) @ np.arange(in_size),
                               expected, rtol=1e-12)


@pytest.mark.parametrize("layer_index", [0, 1, 4, 10, 24, 30])
def test_single_channel_path_equals_the_full_layer(layer_index, vgg16_weights):
  layer = layers_lib.resolve_layer(layer_index)
  images = np.random.default_rng(layer_index).normal(size=(2, 40, 40, 3)).astype(np.float32)
  params = vgg.truncate_params(vgg16_weights.params, layer)
  full = jax.jit(vgg.layer_activation, static_argnums=2)(params, images, layer)
  channels = np.array([0, 5, layer.channels - 1])
  one_each = jax.jit(jax.vmap(vgg.channel_activation, in_axes=(None, None, None, 0)),
                     static_argnums=2)(params, images, layer, channels)
  for row, channel in enumerate(channels):
    np.testing.assert_allclose(one_each[row], full[..., channel], rtol=0,
                               atol=1e-5 * float(np.abs(full).max()))


@pytest.mark.parametrize("shape", [(2, 6, 8, 3), (1, 7, 5, 2)])
def test_max_pool_and_its_gradient_match_torch_after_a_relu(shape):
  """The reshape-max pool: torch's values and gradients, odd sides and ReLU-zero ties included."""
  pre_relu = np.random.default_rng(sum(shape)).normal(size=shape)
  weights = np.random.default_rng(1).normal(size=(shape[0], shape[1] // 2, shape[2] // 2, shape[3]))

  def weighted(x):
    return (vgg.max_pool_2x2(jax.nn.relu(x)) * weights).sum()

  with jax.enable_x64(True):
    value = jax.jit(weighted)(pre_relu)
    gradient = jax.jit(jax.grad(weighted))(pre_relu)

  x = torch.from_numpy(pre_relu).permute(0, 3, 1, 2).requires_grad_(True)
  pooled = torch.nn.functional.max_pool2d(torch.relu(x), 2, 2)
  expected = (pooled * torch.from_numpy(weights).permute(0, 3, 1, 2)).sum()
  expected.backward()
  np.testing.assert_allclose(float(value), expected.item(), rtol=1e-12)
  np.testing.assert_allclose(np.asarray(gradient), x.grad.permute(0, 2, 3, 1).numpy(),
                             rtol=0, atol=1e-12)
  assert np.count_nonzero(pre_relu <= 0) > 0

"""The open core through the public API only: a small Flax CNN and an objective, both
defined here (not VGG), rendered vmapped over several maps.

Tolerances: batch independence and jit = no-jit <= 1e-5 (float32).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxviz


class TinyCNN(nn.Module):
  """Two convs and a pool: enough to have maps worth maximising."""

  @nn.compact
  def __call__(self, x):
    x = nn.relu(nn.Conv(8, (3, 3), name="conv1")(x))
    x = nn.max_pool(x, (2, 2), (2, 2))
    return nn.Conv(6, (3, 3), name="conv2")(x)


def positive_energy(features, images, unit):
  """Mean of the positive part of conv2's channel `unit`, minus a little brightness."""
  channel = features.layer("conv2")[..., unit]
  return jnp.mean(jax.nn.relu(channel)) - 0.01 * jnp.mean(images)


OBJECTIVE = jaxviz.objectives.Custom(positive_energy, reads=("conv2",))
UNITS = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def tiny():
  module = TinyCNN()
  return module, module.init(jax.random.key(1), jnp.zeros((1, 16, 16, 3)))["params"]


def schedule(steps: int):
  return jaxviz.Schedule(size0=16, scales=2, upscale=1.25, steps=steps, lr=0.05)


def objective_of(module, params, images: np.ndarray, units) -> np.ndarray:
  """The test's own objective, computed directly with Flax on the rendered images."""
  values = []
  for image, unit in zip(images, units):
    conv2 = module.apply({"params": params}, image[None], capture_intermediates=True,
                         mutable=["intermediates"])[1]["intermediates"]["conv2"]["__call__"][0]
    values.append(float(jnp.mean(jax.nn.relu(conv2[..., unit])) - 0.01 * image.mean()))
  return np.array(values)


def test_a_flax_cnn_renders_vmapped_and_its_objective_rises(tiny):
  module, params = tiny
  short = jaxviz.render(module, params, OBJECTIVE, UNITS, schedule=schedule(1), batch=4)
  long = jaxviz.render(module, params, OBJECTIVE, UNITS, schedule=schedule(30), batch=4)
  assert long.shape == (4, 20, 20, 3) and 0 <= long.min() and long.max() <= 1
  before, after = objective_of(module, params, short, UNITS), objective_of(module, params,
                                                                            long, UNITS)
  assert np.all(after > before + 1e-3), (before, after)
  assert np.abs(long[0] - long[1]).max() > 0.01  # different maps, different images


def test_a_map_does_not_depend_on_its_batch_mates_and_jit_equals_no_jit(tiny):
  module, params = tiny
  together = jaxviz.render(module, params, OBJECTIVE, UNITS, schedule=schedule(5), batch=4)
  alone = jaxviz.render(module, params, OBJECTIVE, [2], schedule=schedule(5), batch=1)
  np.testing.assert_allclose(together[2], alone[0], rtol=0, atol=1e-5)
  with jax.disable_jit():
    eager = jaxviz.render(module, params, OBJECTIVE, UNITS, schedule=schedule(5), batch=4)
  np.testing.assert_allclose(eager, together, rtol=0, atol=1e-5)


def test_a_plain_function_and_the_objective_algebra(tiny):
  module, params = tiny

  def conv2_only(params, images):
    return {"conv2": module.apply({"params": params}, images)}

  channel = jaxviz.objectives.Channel("conv2")
  as_function = jaxviz.render(conv2_only, params, channel, [3], schedule=schedule(4), batch=1)
  as_module = jaxviz.render(module, params, channel, [3], schedule=schedule(4), batch=1)
  np.testing.assert_allclose(as_function, as_module, rtol=0, atol=1e-6)

  # 2 * a - b / 4 evaluates as it reads, on the same activations.
  combined = 2 * channel - OBJECTIVE / 4
  assert combined.layers() == {"conv2"} and combined.channel_only() is None
  assert channel.channel_only() == "conv2" and (channel + channel).channel_only() == "conv2"
  model = jaxviz.models.as_model(module)
  images = jnp.full((1, 16, 16, 3), 0.5)
  features = jaxviz.models.Features(model, params, images, combined, jnp.int32(3))
  expected = 2 * channel(features, images, 3) - positive_energy(features, images, 3) / 4
  np.testing.assert_allclose(combined(features, images, 3), expected, rtol=1e-6)
  assert sum([channel, channel]).spec() == {
      "sum": [[1.0, {"channel": "conv2"}], [1.0, {"channel": "conv2"}]]}


def test_an_unknown_activation_is_named(tiny):
  module, params = tiny
  with pytest.raises(jaxviz.JaxvizError, match="no activation named 'conv9'.*conv1, conv2"):
    jaxviz.render(module, params, jaxviz.objectives.Channel("conv9"), [0], schedule=schedule(1),
                  batch=1)

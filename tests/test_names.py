"""One name, one meaning: a VGG layer name reads the same activation through every entry
point (the command line, `jaxviz.render(layer, ...)`, `jaxviz.render(VGGModel(), ...)`
with an objective, `objective=` on a layer, the probe): "conv3_1" is read after its ReLU,
as the write-up read it (SPEC §1), and "conv3_1_pre_relu" (or `pre_relu=True`) is the
raw conv output.
"""

from __future__ import annotations

import numpy as np
import pytest

import jaxviz
from jaxviz import layers, nets, ops
from jaxviz.errors import JaxvizError
from jaxviz.optvis import objectives

TINY = jaxviz.Schedule(size0=32, scales=2, steps=3)


@pytest.fixture(scope="module")
def weights():
  return jaxviz.load_weights("random:4")


def test_names_read_where_the_write_up_read_them():
  """The table every entry point resolves names through."""
  read = {name: layers.named_module(name).name
          for name in ("conv3_1", "conv3_1_pre_relu", "relu3_1", "pool2", "conv1_1")}
  assert read == {"conv3_1": "relu3_1", "conv3_1_pre_relu": "conv3_1", "relu3_1": "relu3_1",
                  "pool2": "pool2", "conv1_1": "relu1_1"}
  for not_a_feature_layer in ("relu3_1_pre_relu", "pool2_pre_relu", "fc6", "logits", "x"):
    assert layers.named_module(not_a_feature_layer) is None


@pytest.mark.filterwarnings("ignore::jaxviz.api.RandomWeightsWarning")
def test_the_model_the_probe_and_the_layer_agree_on_conv3_1(weights):
  """`VGGModel().features` under a name equals what the probe ranks by for that layer,
  post-ReLU and pre-ReLU, and the two readings differ (so the test can tell them apart)."""
  photo = np.random.default_rng(0).uniform(size=(224, 224, 3)).astype(np.float32)
  inputs = ops.normalise(photo, *nets.normalisation("vgg16"))[None]
  model = jaxviz.VGGModel()
  found = model.features(weights.params, inputs, frozenset({"conv3_1", "conv3_1_pre_relu"}))
  for name, pre_relu in (("conv3_1", False), ("conv3_1_pre_relu", True)):
    probed = jaxviz.probe_photo(photo, "conv3_1", pre_relu=pre_relu, weights=weights)
    np.testing.assert_allclose(np.asarray(found[name]).mean((0, 1, 2)), probed.means,
                               rtol=1e-5, atol=1e-6)
  assert (np.asarray(found["conv3_1"]) >= 0).all() and (np.asarray(found["conv3_1_pre_relu"])
                                                        < 0).any()


@pytest.mark.filterwarnings("ignore::jaxviz.api.RandomWeightsWarning")
def test_a_render_is_the_same_through_every_entry_point(weights, tmp_path):
  """The same map of conv3_1 rendered by layer, by the VGG model with a Channel objective,
  by `objective=` and by the command line gives the same images; pre-ReLU likewise by
  `pre_relu=True` and by the `_pre_relu` name, and differs from post-ReLU."""
  from PIL import Image

  from conftest import run_cli

  kwargs = dict(schedule=TINY, progress=False)
  by_layer = jaxviz.render("conv3_1", [5], weights=weights, **kwargs)
  by_model = jaxviz.render(jaxviz.VGGModel(), weights.params, objectives.Channel("conv3_1"),
                           [5], **kwargs)
  by_objective = jaxviz.render("conv3_1", [5], weights=weights,
                               objective=objectives.Channel("conv3_1"), **kwargs)
  np.testing.assert_array_equal(by_model, by_layer)
  np.testing.assert_array_equal(by_objective, by_layer)
  run_cli("render", "-l", "conv3_1", "-m", "5", "-w", "random:4", "-o", tmp_path, "--size0",
          "32", "--scales", "2", "--steps", "3")
  png = np.asarray(Image.open(tmp_path / "10_5.png"))
  np.testing.assert_array_equal(png, np.round(np.clip(by_layer[0], 0, 1) * 255))

  pre_by_layer = jaxviz.render("conv3_1", [5], weights=weights, pre_relu=True, **kwargs)
  pre_by_model = jaxviz.render(jaxviz.VGGModel(), weights.params,
                               objectives.Channel("conv3_1_pre_relu"), [5], **kwargs)
  np.testing.assert_array_equal(pre_by_model, pre_by_layer)
  assert np.abs(pre_by_layer - by_layer).max() > 1e-3


@pytest.mark.filterwarnings("ignore::jaxviz.api.RandomWeightsWarning")
def test_objective_on_a_layer_takes_any_objective(weights):
  """`objective=` renders a neuron, a direction and two maps combined on a VGG layer, each
  differently from the channel; anything else is one line naming the argument."""
  kwargs = dict(weights=weights, schedule=TINY, progress=False)
  channel = jaxviz.render("conv3_1", [5], **kwargs)
  two_maps = objectives.Custom(
      lambda features, images, unit: (features.layer("conv3_1")[..., 5].mean()
                                      + features.layer("conv3_1")[..., 9].mean()),
      reads=("conv3_1",), name="maps 5 and 9")
  direction = objectives.Direction("conv3_1", tuple(np.eye(256)[5] + np.eye(256)[9]))
  for objective in (objectives.Neuron("conv3_1"), two_maps, direction):
    images = jaxviz.render("conv3_1", [5], objective=objective, **kwargs)
    assert images.shape == channel.shape and np.isfinite(images).all()
    assert np.abs(images - channel).max() > 1e-3, objective
  with pytest.raises(JaxvizError, match="^objective: expected a jaxviz.objectives objective"):
    jaxviz.render("conv3_1", [5], objective="conv3_1", **kwargs)

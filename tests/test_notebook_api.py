"""The Python API as a notebook user meets it (#21): what dir() shows, lucent's
"layer:map" addresses, one-line errors for wrong argument types, a warning for random
weights, and reprs that do not dump arrays."""

from __future__ import annotations

import flax.linen as nn
import numpy as np
import pytest

import jaxviz
from jaxviz.api import RandomWeightsWarning
from jaxviz.errors import JaxvizError

TINY = jaxviz.Schedule(size0=16, scales=1, steps=2)


def test_dir_lists_the_public_api():
  names = dir(jaxviz)
  for name in ("render", "probe_photo", "load_weights", "NetModel", "objectives", "Schedule",
               "figure", "show", "save"):
    assert name in names
  assert "importlib" not in names


def test_a_layer_map_address_is_a_layer_and_its_map():
  weights = jaxviz.load_weights("random:2")
  with pytest.warns(RandomWeightsWarning, match="RANDOM"):
    addressed = jaxviz.render("conv2_1:3", weights=weights, schedule=TINY, progress=False)
  separate = jaxviz.render("conv2_1", [3], weights=weights, schedule=TINY, progress=False)
  np.testing.assert_array_equal(addressed, separate)
  with pytest.raises(JaxvizError, match="names map 3 already"):
    jaxviz.render("conv2_1:3", [4], weights=weights, schedule=TINY, progress=False)
  with pytest.raises(JaxvizError, match="^maps: give the maps"):
    jaxviz.render("conv2_1", weights=weights, schedule=TINY, progress=False)


def test_wrong_argument_types_are_one_line_naming_the_argument():
  with pytest.raises(JaxvizError, match="^maps: expected map indices"):
    jaxviz.render("conv2_1", 5, weights="random", schedule=TINY, progress=False)
  with pytest.raises(JaxvizError, match="^weights: expected"):
    jaxviz.render("conv2_1", [0], weights=3, schedule=TINY, progress=False)

  class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):
      return nn.Conv(4, (3, 3), name="conv")(x)

  with pytest.raises(JaxvizError, match="^params: expected the parameter tree"):
    jaxviz.render(CNN(), "params.npz", jaxviz.objectives.Channel("conv"), [0], schedule=TINY,
                  progress=False)


def test_loaded_weights_stand_for_their_parameters():
  weights = jaxviz.load_weights("random:2")
  model = jaxviz.VGGModel()
  objective = jaxviz.objectives.Channel("relu2_1")
  with pytest.warns(RandomWeightsWarning):
    from_weights = jaxviz.render(model, weights, objective, [3], schedule=TINY, progress=False)
  from_params = jaxviz.render(model, weights.params, objective, [3], schedule=TINY,
                              progress=False)
  np.testing.assert_array_equal(from_weights, from_params)


def test_reprs_summarise_arrays(tmp_path):
  photo = np.random.default_rng(0).uniform(size=(40, 40, 3))
  outcome = jaxviz.probe_photo(photo, "conv2_1", maps=[3], weights="random:2", renders=None)
  text = repr(outcome)
  assert "<array (224, 224, 3) float" in text and "<array (128,) float" in text
  assert len(text) < 1500, text
  assert len(repr(jaxviz.load_weights("random:2"))) < 400


def test_the_random_weights_warning_names_the_callers_own_line():
  """The warning points at the user's line (Python shows it once per such place), not at
  a line inside jaxviz, whichever API function and path raised it."""
  import warnings

  weights = jaxviz.load_weights("random:2")
  photo = np.random.default_rng(0).uniform(size=(40, 40, 3))
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    jaxviz.render("conv2_1", [3], weights=weights, schedule=TINY, progress=False)
    jaxviz.probe_photo(photo, "conv2_1", maps=[3], weights="random:2")
    jaxviz.render(jaxviz.VGGModel(), weights, jaxviz.objectives.Channel("relu2_1"), [3],
                  schedule=TINY, progress=False)
  places = [(w.filename, w.lineno) for w in caught if w.category is RandomWeightsWarning]
  assert len(places) == 3 and {name for name, _ in places} == {__file__}, places
  assert len({line for _, line in places}) == 3

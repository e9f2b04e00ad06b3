"""jaxviz: see what a VGG network's feature maps have learnt, in JAX.

  import jaxviz
  images = jaxviz.render("conv5_1", [271, 15])          # activation maximisation
  result = jaxviz.probe_photo("house.jpg", 24, maps=[271])   # the hypothesis test
  scores = jaxviz.top_images("photos/", 24)                  # dataset examples
"""

from jaxviz.engine import Schedule
from jaxviz.errors import JaxvizError
from jaxviz.layers import Layer, feature_layers, resolve_layer
from jaxviz.objectives import Target, resolve_target
from jaxviz.weights import Weights, random_weights, resolve as load_weights

__version__ = "0.1.0"

_API = ("probe_photo", "render", "top_images")


def __getattr__(name: str):
  # jaxviz.api pulls in matplotlib and the probe; importing it only when asked
  # keeps each CPU worker process's start (`jaxviz.cpu_workers`) 0.4 s shorter.
  if name in _API:
    from jaxviz import api

    return getattr(api, name)
  raise AttributeError(f"module 'jaxviz' has no attribute {name!r}")


__all__ = [
    "JaxvizError", "Layer", "Schedule", "Target", "Weights", "feature_layers", "load_weights",
    "probe_photo", "random_weights", "render", "resolve_layer", "resolve_target", "top_images",
]

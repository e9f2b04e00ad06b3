"""jaxviz: see what a convolutional network's feature maps have learnt, in JAX.

  import jaxviz
  images = jaxviz.render("conv5_1", [271, 15])          # activation maximisation
  result = jaxviz.probe_photo("house.jpg", 24, maps=[271])   # the hypothesis test
  scores = jaxviz.top_images("photos/", 24)                  # dataset examples
  images = jaxviz.render(my_flax_module, params, jaxviz.objectives.Channel("conv2"), [0, 1])
  jaxviz.show(images, maps=[0, 1])                           # drawn as the CLI draws it

Every name is imported on first use, so that `import jaxviz` (and each CPU
worker process's start) stays light.
"""

import importlib

__version__ = "0.1.0"

_LAZY = {
    "render": "jaxviz.api", "render_layer": "jaxviz.api", "render_model": "jaxviz.api",
    "probe_photo": "jaxviz.api", "top_images": "jaxviz.api", "render_dir": "jaxviz.api",
    "sweep": "jaxviz.api", "compare": "jaxviz.api", "classify_photo": "jaxviz.api",
    "spectrum": "jaxviz.api", "layers_table": "jaxviz.api", "convert_weights": "jaxviz.api",
    "png_info": "jaxviz.api", "build_atlas": "jaxviz.api", "trust_dir": "jaxviz.api",
    "load_weights": "jaxviz.app", "Weights": "jaxviz.weights",
    "random_weights": "jaxviz.weights", "JaxvizError": "jaxviz.errors",
    "Layer": "jaxviz.layers", "feature_layers": "jaxviz.layers",
    "resolve_layer": "jaxviz.layers", "Target": "jaxviz.vgg", "resolve_target": "jaxviz.vgg",
    "VGGModel": "jaxviz.vgg", "NetModel": "jaxviz.nets.networks", "Schedule": "jaxviz.optvis.recipes",
    "Recipe": "jaxviz.optvis.recipes",
    "figure": "jaxviz.plotting", "show": "jaxviz.plotting", "save": "jaxviz.plotting",
}
_SUBMODULES = {"objectives": "jaxviz.optvis.objectives", "params": "jaxviz.optvis.params",
               "transforms": "jaxviz.optvis.transforms", "models": "jaxviz.optvis.models",
               "recipes": "jaxviz.optvis.recipes"}


def __getattr__(name: str):
  if name in _LAZY:
    return getattr(importlib.import_module(_LAZY[name]), name)
  if name in _SUBMODULES:
    return importlib.import_module(_SUBMODULES[name])
  raise AttributeError(f"module 'jaxviz' has no attribute {name!r}")


__all__ = sorted({*_LAZY, *_SUBMODULES})


def __dir__() -> list[str]:
  """The public API (what `__getattr__` imports on first use), for dir() and completion."""
  return sorted({*__all__, "__version__"})

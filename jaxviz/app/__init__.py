"""The application layer: every command's work, shared by the CLI and the Python API.

  * `commands`: one function per command (`render`, `sweep`, `probe`,
    `probe_figure`, `top_images`, `compare`, `spectrum`, `classify`, `convert`,
    `info`, `atlas`, `layers`), taking settings objects and returning outcomes;
    `no_model` holds the three that load no model, so they start without JAX.
  * `rendering`: what they are built on: `--weights` resolution, a layer's
    recipe, rendering units where `execution` decides, render directories.

The CLI (`jaxviz.cli`) parses flags into settings, calls a command and prints its
outcome; `jaxviz.api` does the same from Python arguments. Submodules and the
names below are imported on first use, so that `jaxviz.app.no_model` costs no JAX.
"""

import importlib

_RENDERING = ("RenderEvents", "RenderOutcome", "RenderPlan", "failures_error",
              "import_meanwhile", "is_random_spec", "layer_params", "layer_recipe",
              "load_weights", "map_image", "photo_spectrum", "photo_start", "render_identity", "render_maps", "render_to_dir",
              "render_units")
_SUBMODULES = ("commands", "no_model", "rendering")


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"jaxviz.app.{name}")
  if name in _RENDERING:
    return getattr(importlib.import_module("jaxviz.app.rendering"), name)
  raise AttributeError(f"module 'jaxviz.app' has no attribute {name!r}")


__all__ = sorted({*_RENDERING, *_SUBMODULES})

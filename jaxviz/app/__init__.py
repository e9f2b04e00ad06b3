"""The application layer: every command's work, shared by the CLI and the Python API.

  * `commands`: one function per command (`render`, `sweep`, `probe`,
    `probe_figure`, `top_images`, `compare`, `spectrum`, `classify`, `convert`,
    `info`, `atlas`, `layers`), taking settings objects and returning outcomes.
  * `rendering`: what they are built on: `--weights` resolution, a layer's
    recipe, rendering units where `execution` decides, render directories.

The CLI (`jaxviz.cli`) parses flags into settings, calls a command and prints its
outcome; `jaxviz.api` does the same from Python arguments.
"""

from jaxviz.app.rendering import (RenderEvents, RenderOutcome, RenderPlan, failures_error,
                                  import_meanwhile, layer_params, layer_recipe, load_weights,
                                  map_image, photo_spectrum, photo_start, render_identity,
                                  render_maps, render_to_dir, render_units)
from jaxviz.app import commands

__all__ = ["RenderEvents", "RenderOutcome", "RenderPlan", "commands", "failures_error",
           "import_meanwhile", "layer_params", "layer_recipe", "load_weights", "map_image",
           "photo_spectrum", "photo_start", "render_identity", "render_maps", "render_to_dir",
           "render_units"]

"""The command line's option groups and shared options, declared once.

`MODEL` and `RENDER` are added to each command that takes them (`clikit.with_options`)
and become one settings object (`settings.ModelSettings`, `settings.RenderOptions`);
the settings are validated there, in the library's words, and shown as flags.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Optional

import typer

from jaxviz import layers as layers_lib
from jaxviz import nets
from jaxviz.clikit import Opt, with_options


def _model_settings(**options):
  from jaxviz.settings import ModelSettings

  return ModelSettings(**options).check()


MODEL = (
    Opt("weights", str, "imagenet",
        "'imagenet' (downloaded and converted once, then cached), 'random' or 'random:SEED' "
        "(an untrained network, for offline demos), or a path to a converted .safetensors "
        "or a torchvision .pth state dict.", "-w"),
    Opt("arch", str, layers_lib.DEFAULT_ARCH,
        f"Network for --weights imagenet|random: {', '.join(nets.ARCHS)}. "
        "Files record their own."),
    Opt("precision", str, "default",
        "Conv/matmul precision: default|high|highest. Same on CPU; on GPU 'default' allows "
        "TF32, 'highest' is exact float32."),
)


def _recipe_and_render_options(seed, recipe, preview, size0, scales, upscale, steps, lr,
                               weight_decay, blur, decay_power, transforms, spectrum, diversity,
                               batch, dtype, driver, trace):
  """(RecipeOptions as given, RenderOptions with the seed recipe's defaults)."""
  from jaxviz.settings import RecipeOptions, RenderOptions

  given = RecipeOptions(recipe, size0, scales, upscale, steps, lr, weight_decay, blur,
                        decay_power, transforms, spectrum, preview)
  return given, RenderOptions(seed, batch=batch, dtype=dtype, driver=driver,
                              diversity=diversity, preview=preview, trace=trace).check()


def _render_options(**options):
  given, render = _recipe_and_render_options(**options)
  return dataclasses.replace(render, schedule=given.build()).check()


RENDER = (
    Opt("recipe", str, "seed",
        "seed: the write-up's (SPEC §2: pixels, 12 scales, Adam); lucid: Fourier image, "
        "decorrelated colours, transformation robustness (lucent's render_vis); maco: "
        "phase-only Fourier with a photo-made magnitude (--spectrum), noisy crops."),
    Opt("preview", bool, False,
        "A quick look: seed: 4 scales of 25 steps up to 96 px (about 1/60 of the work); "
        "lucid: 64 steps; maco: 100 steps. Settings given as well still apply."),
    Opt("seed", int, 0, "PRNG seed; map k's randomness comes from fold_in(seed, k)."),
    Opt("size0", Optional[int], None,
        "Side of the (first) image. Default: seed 56, lucid 128, maco 1280."),
    Opt("scales", Optional[int], None, "seed: number of scales (12)."),
    Opt("upscale", Optional[float], None, "seed: side factor between scales (1.2)."),
    Opt("steps", Optional[int], None,
        "Optimiser steps: seed 75 per scale (x1.3 after the first half), lucid 512, "
        "maco 1000."),
    Opt("lr", Optional[float], None, "Learning rate: seed 0.01, lucid 0.05, maco 1.0."),
    Opt("weight_decay", Optional[float], None,
        "seed: L2 weight decay added to the gradient (1e-6)."),
    Opt("blur", Optional[int], None, "seed: box blur between scales (5; odd; 1 = none)."),
    Opt("decay_power", Optional[float], None, "lucid: spectrum decay power (1.0)."),
    Opt("transforms", Optional[bool], None,
        "lucid: lucid's standard transforms on or off (on)."),
    Opt("spectrum", Optional[str], None,
        "maco: the magnitude spectrum (.npy from `jaxviz spectrum`), its side --size0."),
    Opt("diversity", int, 1,
        "Images per map, pushed apart by lucid's diversity term (x100) when above 1; "
        "a map's PNG then shows them side by side."),
    Opt("batch", str, "auto",
        "Maps per vmapped chunk: 'auto' (from device memory and the layer's size; halved on "
        "out-of-memory) or a number."),
    Opt("dtype", str, "float32", "float32 (fast) or float64 (CPU; the mode that equals PyTorch)."),
    Opt("driver", str, "auto", "How steps run: auto (loop on CPU, scan on GPU/TPU), loop, scan."),
    Opt("trace", bool, False,
        "Record each map's objective at every step in render.json (`trace`), to compare a "
        "render step by step with another implementation."),
)

model_options = with_options("model", _model_settings, MODEL, "Network")
render_options = with_options("render", _render_options, RENDER, "Rendering")
compare_options = with_options("render", _recipe_and_render_options, RENDER, "Rendering")

JsonOption = Annotated[bool, typer.Option(
    "--json", metavar="", help="Print the result as JSON on stdout (one document, also on "
                               "errors).")]
LayerOption = Annotated[str, typer.Option(
    "--layer", "-l",
    help="Layer: index (24), name (conv5_1) or features.24; `jaxviz layers` lists them. "
         "A conv layer is read after its ReLU, as the write-up's code read it.")]
MapsOption = Annotated[str, typer.Option(
    "--maps", "-m", help="Feature maps: '271,15', a range '0:16', 'all', or a mix.")]
PreReluOption = Annotated[bool, typer.Option(
    "--pre-relu", metavar="", help="Read a conv layer's raw output (before its ReLU) instead.")]
ForceOption = Annotated[bool, typer.Option(
    "--force", metavar="",
    help="Start over in an --out that holds renders made with other settings.")]
TopImagesOption = Annotated[Optional[Path], typer.Option(
    help="A `top-images --all-maps` JSON table: shows each map's top photos in the atlas.")]
PhotosOption = Annotated[Optional[Path], typer.Option(
    "--photos", metavar="FOLDER",
    help="Natural photos to set each render beside: adds the trust numbers (jaxviz trust) "
         "to render.json.")]
PhotosTopKOption = Annotated[Optional[int], typer.Option(
    "--k", show_default=False,
    help="With --photos: each map's top photos that its render is compared with [default: 5].")]

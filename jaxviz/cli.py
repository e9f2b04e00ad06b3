"""The `jaxviz` command line. It parses arguments and calls library functions.

User errors (`JaxvizError`) print one line on stderr and exit 1; Ctrl-C exits
130. Neither prints a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError

app = typer.Typer(
    help="See what VGG16's feature maps have learnt: activation maximisation in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

WeightsOption = Annotated[str, typer.Option(
    "--weights", "-w",
    help="'imagenet' (downloaded and converted once, then cached), 'random' or 'random:SEED' "
         "(an untrained network, for offline demos), or a path to a converted .safetensors "
         "or a torchvision .pth state dict.")]
ArchOption = Annotated[str, typer.Option(
    help=f"Network for --weights imagenet|random: {', '.join(layers_lib.ARCH_CONFIGS)}. "
         "Files record their own.")]
PrecisionOption = Annotated[str, typer.Option(
    help="Conv/matmul precision: default|high|highest. Same on CPU; on GPU 'default' "
         "allows TF32, 'highest' is exact float32.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _fail(message: str, code: int = 1) -> None:
  typer.echo(f"error: {message}", err=True)
  raise typer.Exit(code)


def user_errors(command):
  """Turns JaxvizError and Ctrl-C into a one-line message and a non-zero exit."""

  @functools.wraps(command)
  def wrapper(*args, **kwargs):
    try:
      return command(*args, **kwargs)
    except JaxvizError as error:
      _fail(str(error))
    except KeyboardInterrupt:
      _fail("interrupted", 130)

  return wrapper


def _load_weights(spec: str, arch: str):
  from jaxviz import weights as weights_lib

  weights = weights_lib.resolve(spec, arch)
  typer.echo(f"weights: {weights.describe()}", err=True)
  return weights


def _check_precision(precision: str) -> str:
  from jaxviz import vgg

  if precision not in vgg.PRECISIONS:
    raise JaxvizError(f"--precision must be one of {', '.join(vgg.PRECISIONS)}, got {precision!r}")
  return precision


@app.command()
@user_errors
def layers(
    arch: ArchOption = layers_lib.DEFAULT_ARCH,
    side: Annotated[int, typer.Option(help="Input side for the output-size column.")] = 224,
    as_json: JsonOption = False,
):
  """List the layers you can render or probe, by index and name.

  Example: [bold]jaxviz layers --json[/bold]
  """
  if side < 1:
    raise JaxvizError(f"--side must be positive, got {side}")
  rows = [{"index": layer.index, "name": layer.name, "kind": layer.kind,
           "channels": layer.channels, "output_size": layer.output_side(side)}
          for layer in layers_lib.feature_layers(arch)]
  if as_json:
    typer.echo(json.dumps({"arch": arch, "input_size": side, "layers": rows}, indent=2))
    return
  typer.echo(f"{arch}, input {side}x{side}")
  typer.echo(f"{'index':>5}  {'name':<8} {'kind':<5} {'channels':>8}  output")
  for row in rows:
    size = row["output_size"]
    typer.echo(f"{row['index']:>5}  {row['name']:<8} {row['kind']:<5} {row['channels']:>8}  "
               f"{size}x{size}")


@app.command()
@user_errors
def convert(
    src: Annotated[Path, typer.Argument(help="torchvision VGG state dict (.pth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors path.")],
    arch: Annotated[Optional[str], typer.Option(
        help="Expected architecture; by default it is detected from the keys.")] = None,
):
  """Convert torchvision VGG weights (.pth) into a jaxviz .safetensors file.

  The state dict must match the architecture exactly; the output is written
  atomically and records the source file's name and sha256.

  Example: [bold]jaxviz convert ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth
  --out vgg16.safetensors[/bold]
  """
  from jaxviz import weights as weights_lib

  try:
    import convert.torchvision_vgg as torchvision_vgg
  except ImportError as error:
    raise JaxvizError(f"jaxviz convert needs torch and torchvision: {error}") from None
  arch = torchvision_vgg.convert_file(src, out, arch)
  typer.echo(f"wrote {out} ({arch}, {len(weights_lib.param_shapes(arch))} tensors)")


@app.command()
@user_errors
def classify(
    image: Annotated[Path, typer.Argument(help="A photo (jpg, png, webp, ...).")],
    top: Annotated[int, typer.Option(help="How many classes to show.")] = 5,
    weights: WeightsOption = "imagenet",
    arch: ArchOption = layers_lib.DEFAULT_ARCH,
    precision: PrecisionOption = "default",
    as_json: JsonOption = False,
):
  """Classify a photo into ImageNet's 1000 classes: a quick check of the weights.

  The photo gets the probe's preprocessing: RGB in [0, 1], OpenCV-style
  bicubic resize to 224x224, ImageNet normalisation.

  Example: [bold]jaxviz classify cat.jpg --top 5[/bold]
  """
  from jaxviz import classify as classify_lib
  from jaxviz import fileio

  if not 1 <= top <= 1000:
    raise JaxvizError(f"--top must be between 1 and 1000, got {top}")
  precision = _check_precision(precision)
  photo = fileio.read_image(image)
  loaded = _load_weights(weights, arch)
  ranked = classify_lib.classify(loaded, photo, top, precision)
  if as_json:
    typer.echo(json.dumps({"image": str(image), "weights": loaded.label,
                           "random_weights": loaded.is_random, "top": ranked}, indent=2))
    return
  for row in ranked:
    typer.echo(f"{row['prob']:8.4f}  {row['logit']:9.3f}  {row['index']:>4}  {row['label']}")
  if loaded.is_random:
    typer.echo("(random weights: these classes mean nothing)")


def _use_compilation_cache() -> None:
  """Persistent XLA cache in the user cache dir, so a second run skips compiling."""
  import jax

  from jaxviz import weights as weights_lib

  jax.config.update("jax_compilation_cache_dir", str(weights_lib.cache_dir() / "xla"))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


def _progress():
  from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                             TimeElapsedColumn, TimeRemainingColumn)

  return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(),
                  console=__import__("rich.console").console.Console(stderr=True))


@app.command()
@user_errors
def render(
    layer: Annotated[str, typer.Option(help="Layer: index (24), name (conv5_1) or features.24.")],
    maps: Annotated[str, typer.Option(
        help="Feature maps: '271,15', a range '0:16', 'all', or a mix.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("renders"),
    weights: WeightsOption = "imagenet",
    arch: ArchOption = layers_lib.DEFAULT_ARCH,
    seed: Annotated[int, typer.Option(help="PRNG seed; map k starts from fold_in(seed, k).")] = 0,
    size0: Annotated[int, typer.Option(help="Side of the first scale.")] = 56,
    scales: Annotated[int, typer.Option(help="Number of scales.")] = 12,
    upscale: Annotated[float, typer.Option(help="Side factor between scales.")] = 1.2,
    steps: Annotated[int, typer.Option(
        help="Adam steps per scale (x1.3 after the first half).")] = 75,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 0.01,
    weight_decay: Annotated[float, typer.Option(help="L2 added to the gradient.")] = 1e-6,
    blur: Annotated[int, typer.Option(help="Box blur between scales (odd; 1 = none).")] = 5,
    init: Annotated[Optional[Path], typer.Option(
        help="Start from this photo (resized to size0) instead of noise.")] = None,
    batch: Annotated[int, typer.Option(help="Maps rendered together (vmapped).")] = 8,
    dtype: Annotated[str, typer.Option(
        help="float32 (fast) or float64 (CPU; the mode that equals PyTorch).")] = "float32",
    precision: PrecisionOption = "default",
    driver: Annotated[str, typer.Option(
        help="How steps run: auto (loop on CPU, scan on GPU/TPU), loop, scan.")] = "auto",
    as_json: JsonOption = False,
):
  """Render feature maps by activation maximisation (the write-up's algorithm).

  Writes OUT/<layer>_<map>.png per map, OUT/grid.png (panels titled "fmap N")
  and OUT/render.json (settings, weights, device, objective per scale, time).

  Example: [bold]jaxviz render --layer 24 --maps 271,15 --out renders/[/bold]
  """
  from jaxviz import api, engine, fileio
  from jaxviz.objectives import Target

  schedule = engine.Schedule(size0=size0, scales=scales, upscale=upscale, steps=steps, lr=lr,
                             weight_decay=weight_decay, blur=blur)
  # Everything that can be checked is checked before weights load or work starts.
  target = Target(layers_lib.resolve_layer(layer, arch), arch, _check_precision(precision))
  map_list = layers_lib.parse_maps(maps, target.layer)
  schedule.check(target)
  engine.dtype_context(dtype)
  engine.resolve_driver(driver)
  if batch < 1:
    raise JaxvizError(f"--batch must be at least 1, got {batch}")
  if init is not None:
    fileio.read_image(init)
  fileio.ensure_writable_dir(out)
  _use_compilation_cache()

  loaded = _load_weights(weights, arch)
  if loaded.arch != arch:
    target = Target(layers_lib.resolve_layer(layer, loaded.arch), loaded.arch, target.precision)
    map_list = layers_lib.parse_maps(maps, target.layer)
  batches = -(-len(map_list) // min(batch, len(map_list)))
  with _progress() as progress:
    task = progress.add_task(f"layer {target.layer.index} ({target.layer.name}), "
                             f"{len(map_list)} maps", total=schedule.total_steps() * batches)
    record = api.render_to_dir(loaded, target, map_list, out, seed=seed, schedule=schedule,
                               batch=batch, dtype=dtype, driver=driver, init_path=init,
                               on_steps=lambda n: progress.advance(task, n))
  if as_json:
    typer.echo(json.dumps(record, indent=2))
  else:
    typer.echo(f"wrote {len(map_list)} renders, grid.png and render.json to {out} "
               f"in {record['wall_time_s']:.1f} s")
  if loaded.is_random:
    typer.echo("(random weights: these renders show an untrained network)", err=True)


def main() -> None:
  app()


if __name__ == "__main__":
  sys.exit(main())

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


def main() -> None:
  app()


if __name__ == "__main__":
  sys.exit(main())

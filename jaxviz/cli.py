"""The `jaxviz` command line: it parses arguments, calls `jaxviz.app` and prints.

Options shared by several commands are declared once, as groups (`MODEL`,
`RENDER`) that `with_options` adds to each command and turns into one
settings object. User errors print one `error:` line on stderr and exit 1
(a setting named by its flag); Ctrl-C exits 130; neither prints a traceback.
With --json, stdout holds one JSON document even when a command fails.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError, SettingError
from jaxviz.progress import ProgressEvents, duration, plural, progress_bar

class _HelpWithoutType:
  """`--help` without the `<bool>` typer shows after it."""

  def get_help_option(self, ctx):
    option = super().get_help_option(ctx)
    if option is not None:
      option.metavar = ""
    return option


class _Command(_HelpWithoutType, typer.core.TyperCommand):
  """typer's command with the usual usage line: positionals as `PHOTO`, where typer
  writes required ones as `{PHOTO}`."""

  def collect_usage_pieces(self, ctx):
    return [re.sub(r"^\{(.*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


class _Group(_HelpWithoutType, typer.core.TyperGroup):
  pass


app = typer.Typer(
    cls=_Group,
    help="See what VGG16's feature maps have learnt: activation maximisation in JAX.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _print_version(value: bool) -> None:
  if value:
    from jaxviz import __version__

    typer.echo(f"jaxviz {__version__}")
    raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[bool, typer.Option(
        "--version", metavar="", callback=_print_version, is_eager=True,
        help="Print jaxviz's version and exit.")] = False,
):
  """See what VGG16's feature maps have learnt: activation maximisation in JAX."""


# Errors.

def flag(setting: str) -> str:
  """A setting's name as its command-line flag: weight_decay -> --weight-decay."""
  return "--" + setting.replace("_", "-")


def _fail(message: str, code: int = 1) -> None:
  typer.echo(f"error: {message}", err=True)
  raise typer.Exit(code)


# Whether the running command has printed its JSON result (see `user_errors`).
_json_printed = contextvars.ContextVar("jaxviz_json_printed", default=False)


def _echo_json(data) -> None:
  from jaxviz import fileio

  typer.echo(fileio.json_text(data))
  _json_printed.set(True)


def user_errors(command):
  """Turns JaxvizError and Ctrl-C into a one-line message and a non-zero exit.

  With --json, stdout still holds one JSON document: the command's result if
  it printed one before failing, else {"error": message}.
  """

  @functools.wraps(command)
  def wrapper(*args, **kwargs):
    printed = _json_printed.set(False)
    try:
      return command(*args, **kwargs)
    except SettingError as error:
      message, code = f"{flag(error.setting)} {error.problem}", 1
    except JaxvizError as error:
      message, code = str(error), 1
    except KeyboardInterrupt:
      message, code = "interrupted", 130
    finally:
      json_done = _json_printed.get()
      _json_printed.reset(printed)
    if kwargs.get("as_json") and not json_done:
      _echo_json({"error": message})
    _fail(message, code)

  return wrapper


# Option groups: declared once, added to every command that takes them.

@dataclasses.dataclass(frozen=True)
class Opt:
  """One option of a group: its setting name, type, default and help."""

  name: str
  type: Any
  default: Any
  help: str
  short: str | None = None


def with_options(parameter: str, build: Callable[..., Any], options: tuple[Opt, ...],
                 panel: str):
  """Replaces the command's `parameter` by the group's options (shown under `panel`
  in --help) and passes the command `build(**those options)` in its place."""

  def decorate(command):
    signature = inspect.signature(command, eval_str=True)
    def option(opt: Opt):
      on, switch = flag(opt.name), opt.type in (bool, Optional[bool])
      names = [f"{on}/--no-{on[2:]}" if switch else on] + ([opt.short] if opt.short else [])
      return typer.Option(*names, help=opt.help, rich_help_panel=panel,
                          metavar="" if switch else None)

    added = [inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=opt.default,
                               annotation=Annotated[opt.type, option(opt)])
             for opt in options]
    parameters = []
    for existing in signature.parameters.values():
      if existing.name == parameter:
        parameters.extend(added)
      else:
        parameters.append(existing.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs):
      built = build(**{opt.name: kwargs.pop(opt.name) for opt in options})
      return command(**kwargs, **{parameter: built})

    wrapper.__signature__ = signature.replace(parameters=parameters)
    del wrapper.__wrapped__
    return wrapper

  return decorate


@dataclasses.dataclass(frozen=True)
class ModelOptions:
  weights: str
  arch: str
  precision: str


MODEL = (
    Opt("weights", str, "imagenet",
        "'imagenet' (downloaded and converted once, then cached), 'random' or 'random:SEED' "
        "(an untrained network, for offline demos), or a path to a converted .safetensors "
        "or a torchvision .pth state dict.", "-w"),
    Opt("arch", str, layers_lib.DEFAULT_ARCH,
        f"Network for --weights imagenet|random: {', '.join(layers_lib.ARCH_CONFIGS)}. "
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

model_options = with_options("model", ModelOptions, MODEL, "Network")
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


# Shared steps.

def _use_compilation_cache() -> None:
  """Persistent XLA cache in the user cache dir, so a second run skips compiling; one
  warning line if it cannot be used."""
  from jaxviz import weights as weights_lib, xla_cache

  problem = xla_cache.use(weights_lib.cache_dir() / "xla")
  if problem:
    typer.echo(f"warning: {problem}", err=True)


def _load_weights(model: ModelOptions):
  """The weights `--weights`/`--arch` name, said on stderr."""
  from jaxviz import app as app_lib

  loaded = app_lib.load_weights(model.weights, model.arch,
                                say=lambda line: typer.echo(line, err=True))
  typer.echo(f"weights: {loaded.describe()}", err=True)
  return loaded


def _load_target(model: ModelOptions, layer: str, pre_relu: bool):
  """Loads the weights, then resolves --layer once, against the architecture they hold."""
  from jaxviz import vgg

  vgg.check_precision(model.precision)
  loaded = _load_weights(model)
  return loaded, vgg.resolve_target(layer, loaded.arch, pre_relu=pre_relu,
                                    precision=model.precision)


def _render_with_progress(loaded, target, maps, out, options, *, label: str, **settings):
  """app.render_to_dir with a progress bar over the work, printing what it reports."""
  from jaxviz import app as app_lib

  with progress_bar() as progress:
    return app_lib.render_to_dir(loaded, target, maps, out, options,
                                 events=ProgressEvents(progress, label, out), **settings)


def _random_note(loaded) -> None:
  if loaded.is_random:
    typer.echo("(random weights: these renders show an untrained network)", err=True)


def _weights_label(loaded) -> str:
  """'weights: LABEL', marked when random, for figure titles."""
  return f"weights: {loaded.label}" + (" (RANDOM, untrained)" if loaded.is_random else "")


def _end_of_rendering(loaded, outcome, out: Path) -> None:
  """The note on random weights; then exit 1 if any map failed (the others are kept)."""
  _random_note(loaded)
  if outcome.failed:
    from jaxviz import app as app_lib

    raise app_lib.failures_error(outcome.failed, out)


# Commands.

@app.command(cls=_Command)
@user_errors
def layers(
    arch: Annotated[str, typer.Option(help="Network: vgg11, vgg13, vgg16 or vgg19.")] =
    layers_lib.DEFAULT_ARCH,
    side: Annotated[int, typer.Option(help="Input side for the output-size column.")] = 224,
    as_json: JsonOption = False,
):
  """List the layers you can render or probe, by index and name.

  Example (offline): [bold]jaxviz layers --json[/bold]
  """
  if side < 1:
    raise SettingError("side", f"must be positive, got {side}")
  rows = [{"index": layer.index, "name": layer.name, "kind": layer.kind,
           "channels": layer.channels, "output_size": layer.output_side(side),
           "reads": layers_lib.read_layer(layer, arch).name,
           "pre_relu_reads": layer.name if layer.kind == "conv" else None}
          for layer in layers_lib.feature_layers(arch)]
  if as_json:
    _echo_json({"arch": arch, "input_size": side, "layers": rows})
    return
  typer.echo(f"{arch}, input {side}x{side}")
  typer.echo(f"{'index':>5}  {'name':<8} {'kind':<5} {'channels':>8}  {'output':<8} reads")
  for row in rows:
    size = row["output_size"]
    reads = (f"{row['reads']} output (post-ReLU; --pre-relu: raw conv)" if row["kind"] == "conv"
             else "its own output")
    typer.echo(f"{row['index']:>5}  {row['name']:<8} {row['kind']:<5} {row['channels']:>8}  "
               f"{f'{size}x{size}':<8} {reads}")


@app.command(cls=_Command)
@user_errors
def convert(
    src: Annotated[Path, typer.Argument(metavar="SRC",
                                        help="torchvision VGG state dict (.pth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors path.")],
    arch: Annotated[Optional[str], typer.Option(
        help="Expected architecture; by default it is detected from the keys.")] = None,
):
  """Convert torchvision VGG weights (.pth) into a jaxviz .safetensors file.

  The state dict must match the architecture exactly; the output is written
  atomically and records the source file's name and sha256.

  Example (offline, from a local file): [bold]jaxviz convert
  ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth -o vgg16.safetensors[/bold]
  """
  from jaxviz import vgg

  try:
    import jaxviz_convert.torchvision_vgg as torchvision_vgg
  except ImportError as error:
    raise JaxvizError(f"jaxviz convert needs torch and torchvision: {error}") from None
  arch = torchvision_vgg.convert_file(src, out, arch)
  typer.echo(f"wrote {out} ({arch}, {len(vgg.param_shapes(arch))} tensors)")


@app.command(cls=_Command)
@user_errors
@model_options
def classify(
    image: Annotated[Path, typer.Argument(metavar="PHOTO", help="A photo (jpg, png, webp, ...).")],
    top: Annotated[int, typer.Option(help="How many classes to show.")] = 5,
    model: ModelOptions = None,
    as_json: JsonOption = False,
):
  """Classify a photo into ImageNet's 1000 classes: a quick check of the weights.

  The photo gets the probe's preprocessing: RGB in [0, 1], OpenCV-style
  bicubic resize to 224x224, ImageNet normalisation.

  Example: [bold]jaxviz classify cat.jpg --top 5[/bold]

  Offline: [bold]jaxviz classify cat.jpg -w random[/bold] (an untrained network)
  """
  from jaxviz import classify as classify_lib
  from jaxviz import fileio, vgg

  if not 1 <= top <= 1000:
    raise SettingError("top", f"must be between 1 and 1000, got {top}")
  precision = vgg.check_precision(model.precision)
  photo = fileio.read_image(image)
  loaded = _load_weights(model)
  ranked = classify_lib.classify(loaded, photo, top, precision)
  if as_json:
    _echo_json({"image": str(image), "weights": loaded.label,
                "random_weights": loaded.is_random, "top": ranked})
    return
  typer.echo(f"{'prob':>8}  {'logit':>9}  {'class':>5}  label")
  for row in ranked:
    typer.echo(f"{row['prob']:8.4f}  {row['logit']:9.3f}  {row['index']:>5}  {row['label']}")
  if loaded.is_random:
    typer.echo("(random weights: these classes mean nothing)")


@app.command(cls=_Command)
@user_errors
@render_options
@model_options
def render(
    layer: LayerOption,
    maps: MapsOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")] = Path("renders"),
    pre_relu: PreReluOption = False,
    init: Annotated[Optional[Path], typer.Option(
        help="Start from this photo (resized to size0) instead of noise.")] = None,
    force: ForceOption = False,
    as_json: JsonOption = False,
    model: ModelOptions = None,
    render: Any = None,
):
  """Render feature maps by activation maximisation (the write-up's algorithm).

  Writes OUT/<layer>_<map>.png per map, OUT/grid.png (panels titled "fmap N")
  and OUT/render.json (settings and their hash, weights, device, objective per
  scale, wall time). Rerun the same command to resume an interrupted render.

  Example: [bold]jaxviz render -l 24 -m 271,15 -o renders/[/bold]

  Offline: [bold]jaxviz render -l 10 -m 0:3 -w random --preview -o demo/[/bold]
  """
  from jaxviz import fileio

  if init is not None:
    fileio.read_image(init)
  fileio.ensure_writable_dir(out)
  _use_compilation_cache()
  loaded, target = _load_target(model, layer, pre_relu)
  map_list = layers_lib.parse_maps(maps, target.layer)
  outcome = _render_with_progress(loaded, target, map_list, out, render, init_path=init,
                                  force=force,
                                  label=f"{target.describe()}, {len(map_list)} maps")
  if as_json:
    _echo_json(outcome.record)
  else:
    written = (f"rendered {plural(len(outcome.rendered), 'map')} in "
               f"{duration(outcome.wall_time_s)}" if outcome.rendered else "rendered nothing new")
    typer.echo(f"{written}; {plural(len(outcome.record['files']), 'map')} in {out} "
               "(grid.png, render.json)")
  _end_of_rendering(loaded, outcome, out)


@app.command(cls=_Command)
@user_errors
@render_options
@model_options
def probe(
    image: Annotated[Path, typer.Argument(metavar="PHOTO", help="A photo (jpg, png, webp, ...).")],
    layer: LayerOption,
    top: Annotated[int, typer.Option(help="How many top maps to report and draw.")] = 15,
    map_: Annotated[Optional[list[int]], typer.Option(
        "--map", help="A map to report the rank of (repeatable): is it in the top k?")] = None,
    pre_relu: PreReluOption = False,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o", help="Write the write-up's figure here (PNG).")] = None,
    renders: Annotated[Path, typer.Option(
        help="A `jaxviz render` directory with the top maps' renders; missing ones are "
             "rendered into it with the rendering options.")] = Path("renders"),
    no_renders: Annotated[bool, typer.Option(
        "--no-renders", metavar="", help="Draw only the photo and the activation plot.")] = False,
    as_json: JsonOption = False,
    model: ModelOptions = None,
    render: Any = None,
):
  """Test an interpretation on a real photo: rank a layer's maps by mean activation.

  The photo is resized to 224x224 (OpenCV-style bicubic) and normalised; each
  map's score is its mean activation (after the ReLU for a conv layer, as the
  write-up read it; --pre-relu for the raw conv output). Prints the top k and
  the rank of every --map; --out draws the write-up's figure.

  Example: [bold]jaxviz probe house.jpg -l 24 --map 271 -o house_probe.png[/bold]

  Offline: [bold]jaxviz probe house.jpg -l 10 -w random --no-renders -o fig.png[/bold]
  """
  from jaxviz import app as app_lib
  from jaxviz import fileio
  from jaxviz import probe as probe_lib

  if out is not None:
    fileio.ensure_writable_dir(out.parent)
  photo = fileio.read_image(image)
  _use_compilation_cache()
  loaded, target = _load_target(model, layer, pre_relu)
  result = probe_lib.probe(loaded, photo, target, top=top, maps=map_ or ())
  top_maps = [m for _, m, _ in result.top]

  # The answer first: the ranking is printed (or written as JSON) before any rendering.
  if as_json:
    _echo_json(result.to_json(str(image), loaded.label))
  else:
    typer.echo(f"{target.describe()}, {image}")
    typer.echo(f"{'rank':>4}  {'map':>4}  mean")
    for rank, map_index, mean in result.top:
      typer.echo(f"{rank:>4}  {map_index:>4}  {mean:.4f}")
    for map_index, (rank, mean) in result.asked.items():
      verdict = "in" if rank <= top else "NOT in"
      typer.echo(f"map {map_index}: rank {rank} of {target.layer.channels}, mean {mean:.4f} "
                 f"({verdict} the top {top})")
  sys.stdout.flush()
  if out is None:
    return
  from jaxviz import figures, store  # matplotlib, only for the figure

  failed: dict[int, str] = {}
  rendered = None
  recipe_name = render.schedule.recipe(None).name
  if not no_renders:
    quicker = "" if render.preview else ", --preview renders quickly"
    typer.echo(f"the figure needs renders of the top {plural(len(top_maps), 'map')} "
               f"(recipe {recipe_name}) from {renders}; "
               f"--no-renders draws it without them{quicker}", err=True)
    outcome = _render_with_progress(
        loaded, target, top_maps, renders, render,
        label=f"rendering the top {plural(len(top_maps), 'map')} into {renders}")
    failed = outcome.failed
    rendered = store.load_renders(renders, top_maps, outcome.record["identity_hash"])
  footnote = _weights_label(loaded) + ("" if no_renders else f"; renders: recipe {recipe_name}")
  title = f"Top {len(top_maps)} Feature Maps from {target.describe()}"
  figures.probe_figure(result.photo, result.means, top_maps, target.describe(), rendered, out,
                       footnote=footnote, asked=result.asked,
                       text=fileio.png_text(title, {**target.provenance(), "photo": str(image),
                                                    **loaded.provenance()}))
  typer.echo(f"figure: {out}", err=as_json)
  if failed:
    raise app_lib.failures_error(failed, renders)


@app.command("top-images", cls=_Command)
@user_errors
@model_options
def top_images(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER",
                                           help="A folder of photos (searched recursively).")],
    layer: LayerOption,
    map_: Annotated[Optional[int], typer.Option("--map", help="The map to rank photos by.")] = None,
    all_maps: Annotated[bool, typer.Option(
        "--all-maps", metavar="",
        help="Every map's top photos, from the same single pass (JSON table).")] = False,
    pre_relu: PreReluOption = False,
    top: Annotated[int, typer.Option(help="How many photos per map.")] = 9,
    out: Annotated[Optional[Path], typer.Option(
        "--out", "-o",
        help="With --map: a grid of the top photos and their scores (PNG). With --all-maps: "
             "the JSON table.")] = None,
    batch: Annotated[int, typer.Option(help="Photos per jitted batch.")] = 16,
    as_json: JsonOption = False,
    model: ModelOptions = None,
):
  """Rank the photos of a folder by a map's mean activation ("dataset examples").

  Unreadable files are skipped with a warning and counted.

  Example: [bold]jaxviz top-images ~/photos -l 24 --map 271 -o top271.png[/bold]

  Offline: [bold]jaxviz top-images ~/photos -l 10 --map 5 -w random[/bold]
  """
  from jaxviz import atlas, fileio
  from jaxviz import probe as probe_lib

  if (map_ is None) == (not all_maps):
    raise JaxvizError("give either --map N or --all-maps")
  if top < 1:
    raise SettingError("top", f"must be at least 1, got {top}")
  if batch < 1:
    raise SettingError("batch", f"must be at least 1, got {batch}")
  paths = probe_lib.find_images(folder)
  if out is not None:
    fileio.ensure_writable_dir(out.parent)
  _use_compilation_cache()
  loaded, target = _load_target(model, layer, pre_relu)
  if map_ is not None:
    layers_lib.parse_maps(str(map_), target.layer)

  with progress_bar() as progress:
    task = progress.add_task(f"scoring {len(paths)} images", total=len(paths))
    scores = probe_lib.score_folder(
        loaded, folder, target, batch=batch, on_image=lambda: progress.advance(task),
        on_skip=lambda path, why: progress.console.print(f"warning: skipped {why}",
                                                         soft_wrap=True))
  skipped = [str(path) for path, _ in scores.skipped]
  if all_maps:
    table = atlas.top_images_table(scores, target, loaded.label, top)
    if out is not None:
      fileio.write_json(out, table)
    if as_json or out is None:
      _echo_json(table)
    else:
      typer.echo(f"wrote the top {top} photos of all {target.layer.channels} maps to {out} "
                 f"({len(scores.images)} images, {len(skipped)} skipped)")
    return

  ranked = scores.top_images(map_, top)
  if out is not None:
    from jaxviz import figures  # matplotlib, only for the grid

    title = f"{target.describe()} map {map_}, weights: {loaded.label}"
    figures.titled_grid([fileio.read_image(p) for p, _ in ranked],
                        [f"{p.name}\n{v:.3f}" for p, v in ranked], out, min(3, len(ranked)),
                        suptitle=title,
                        text=fileio.png_text(title, {**target.provenance(), "map": map_,
                                                     **loaded.provenance()}))
    typer.echo(f"wrote {out}", err=as_json)
  if as_json:
    _echo_json({**target.provenance(), "map": map_,
                "top": [{"image": str(p), "mean": v} for p, v in ranked], "skipped": skipped})
    return
  typer.echo(f"{'rank':>4}  {'mean':>9}  image")
  for rank, (path, mean) in enumerate(ranked, 1):
    typer.echo(f"{rank:>4}  {mean:9.4f}  {path}")
  if skipped:
    typer.echo(f"({plural(len(skipped), 'unreadable file')} skipped)")


@app.command(cls=_Command)
@user_errors
@render_options
@model_options
def sweep(
    layer: LayerOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output directory.")],
    maps: MapsOption = "all",
    pre_relu: PreReluOption = False,
    top_images: TopImagesOption = None,
    distributed: Annotated[bool, typer.Option(
        "--distributed", metavar="", help="Multi-host: call jax.distributed.initialize() (TPU pods, SLURM, or the "
             "JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID environment); each "
             "process renders maps[process_index::process_count] on its own devices. If one "
             "process dies the others stop too; rerun all of them to resume.")] = False,
    process_index: Annotated[Optional[int], typer.Option(
        help="Without --distributed: this job's share, maps[K::N] (K of --process-count N), "
             "for independent jobs writing into one shared --out.")] = None,
    process_count: Annotated[int, typer.Option(help="See --process-index.")] = 1,
    force: ForceOption = False,
    model: ModelOptions = None,
    render: Any = None,
):
  """Render every map of a layer: chunked, resumable, on every local device; then the atlas.

  Each finished map is written atomically and recorded in OUT/render.json with
  a hash of the settings and weights. Rerun the same command to resume after an
  interruption (even kill -9); other settings into the same OUT are refused
  unless --force. Writes OUT/index.html, an offline page of all maps.

  Example: [bold]jaxviz sweep -l 24 -o sweeps/conv5_1[/bold]

  Offline: [bold]jaxviz sweep -l 10 -m 0:8 -w random --preview -o sweeps/demo[/bold]
  """
  import jax

  from jaxviz import atlas, execution, fileio

  if distributed:  # before anything starts JAX's backend
    process_index, process_count = execution.initialize_distributed()
  if process_count < 1:
    raise SettingError("process_count", f"must be at least 1, got {process_count}")
  if not 0 <= (process_index or 0) < process_count:
    raise SettingError("process_index", f"must be in 0..{process_count - 1}, got "
                                        f"{process_index}")
  table = atlas.read_top_images(top_images) if top_images is not None else None
  fileio.ensure_writable_dir(out)
  _use_compilation_cache()
  loaded, target = _load_target(model, layer, pre_relu)
  map_list = layers_lib.parse_maps(maps, target.layer)
  devices = jax.local_devices()
  typer.echo(f"{len(devices)} {devices[0].platform} device(s)"
             + (f", process {process_index or 0} of {process_count}" if process_count > 1
                else ""), err=True)
  outcome = _render_with_progress(
      loaded, target, map_list, out, render, force=force,
      process_index=process_index or 0, process_count=process_count,
      label=f"{target.describe()} maps")
  built = atlas.build_atlas(out, table)
  typer.echo(f"{plural(len(outcome.record['files']), 'map')} in {out} ("
             f"{len(outcome.rendered)} rendered now in {duration(outcome.wall_time_s)}); "
             f"atlas: {built.index}")
  _end_of_rendering(loaded, outcome, out)


@app.command(cls=_Command)
@user_errors
@compare_options
@model_options
def compare(
    layer: LayerOption,
    maps: MapsOption,
    recipes: Annotated[str, typer.Option(
        help="Recipes side by side, comma-separated: seed, lucid, maco.")] = "seed,lucid,maco",
    out: Annotated[Path, typer.Option("--out", "-o", help="The figure (PNG).")] =
    Path("compare.png"),
    pre_relu: PreReluOption = False,
    model: ModelOptions = None,
    render: Any = None,
):
  """Render the same maps with several recipes: one row per map, one column per recipe.

  Each panel is titled with its recipe, its map and its final objective.
  Rendering options apply to every recipe that has them (--recipe is ignored).

  Example: [bold]jaxviz compare -l 24 -m 271,15 --recipes seed,lucid -o fig.png[/bold]

  Offline: [bold]jaxviz compare -l 10 -m 1,2 --recipes seed,lucid -w random --preview[/bold]
  """
  from jaxviz import app as app_lib
  from jaxviz import figures, fileio
  from jaxviz.settings import parse_recipes

  names = parse_recipes(recipes)
  given, render = render
  settings = {name: dataclasses.replace(given, recipe=name).build(strict=False)
              for name in names}
  fileio.ensure_writable_dir(out.parent)
  _use_compilation_cache()
  loaded, target = _load_target(model, layer, pre_relu)
  map_list = layers_lib.parse_maps(maps, target.layer)
  for name in names:  # every recipe's settings are checked before any renders
    app_lib.layer_recipe(target, settings[name], render.diversity)
  images, objectives = {}, {}
  for name in names:
    options = dataclasses.replace(render, schedule=settings[name])
    with progress_bar() as progress:
      events = ProgressEvents(progress, f"{name}: {plural(len(map_list), 'map')}")
      images[name], objectives[name] = app_lib.render_maps(loaded, target, map_list, options,
                                                           events)
  title = f"{target.describe()}, {_weights_label(loaded)}"
  figures.compare_figure(images, objectives, map_list, out, title,
                         text=fileio.png_text(title, {**target.provenance(), "maps": map_list,
                                                      "recipes": names, **loaded.provenance()}))
  typer.echo(f"wrote {out}")
  _random_note(loaded)


@app.command(cls=_Command)
@user_errors
def spectrum(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER",
                                           help="A folder of photos (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The spectrum (.npy).")],
    size: Annotated[int, typer.Option(help="Side of the MACO images it is for (even).")] = 1280,
):
  """Average the decorrelated magnitude spectra of a folder of photos, for --recipe maco.

  Each photo is resized to SIZE x SIZE, its colours decorrelated (lucid's
  matrix), and the magnitudes of each plane's 2-D real FFT averaged: a
  (3, SIZE, SIZE // 2 + 1) float32 array. Nothing is downloaded.

  Example (offline): [bold]jaxviz spectrum ~/photos --size 256 -o spectrum256.npy[/bold]
  """
  import numpy as np

  from jaxviz import app as app_lib
  from jaxviz import fileio
  from jaxviz import probe as probe_lib

  paths = probe_lib.find_images(folder)
  magnitude, used = app_lib.photo_spectrum(
      paths, size, on_skip=lambda path, why: typer.echo(f"warning: skipped {why}", err=True))
  with fileio.atomic_write(out) as tmp:
    with open(tmp, "wb") as handle:
      np.save(handle, magnitude)
  typer.echo(f"wrote {out}: {magnitude.shape} from {used} photos")


@app.command(cls=_Command)
@user_errors
def info(
    png: Annotated[Path, typer.Argument(metavar="PNG", help="A PNG that jaxviz wrote.")],
    as_json: JsonOption = False,
):
  """Show what made a jaxviz PNG: layer, map, recipe, settings hash, weights, version.

  Every PNG jaxviz writes (renders, grids, figures) carries this in its text chunks.

  Example (offline): [bold]jaxviz info renders/24_271.png[/bold]
  """
  from jaxviz import fileio

  text = fileio.png_info(png)
  provenance = text.get(fileio.PROVENANCE_KEY)
  if not isinstance(provenance, dict):
    raise JaxvizError(f"{fileio.display(png)} was not written by jaxviz (it has no jaxviz "
                      "text chunk)")
  if as_json:
    _echo_json({"title": text.get("Title", ""), **provenance})
    return
  typer.echo(fileio.display(text.get("Title", png)))
  if provenance.get("random_weights") is True:
    typer.echo("RANDOM weights: an untrained network")
  rows = {fileio.display(key): fileio.display(value) for key, value in provenance.items()}
  width = max(len(key) for key in rows)
  for key, value in sorted(rows.items()):
    typer.echo(f"  {key:<{width}}  {value}")


@app.command("atlas", cls=_Command)
@user_errors
def atlas_command(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A render or sweep directory.")],
    top_images: TopImagesOption = None,
):
  """Rebuild OUT/index.html, the offline atlas of a render or sweep directory.

  Example (offline): [bold]jaxviz atlas sweeps/conv5_1 --top-images conv5_1_photos.json[/bold]
  """
  from jaxviz import atlas

  if not out.is_dir():
    raise JaxvizError(f"not a directory: {out}")
  table = atlas.read_top_images(top_images) if top_images is not None else None
  built = atlas.build_atlas(out, table)
  for map_index, filename in sorted(built.damaged.items()):
    typer.echo(f"warning: {filename} (map {map_index}) is missing or not the PNG its record "
               "made; left out (rerun the command that made it to render it again)", err=True)
  typer.echo(f"atlas: {built.index} ({plural(built.maps, 'map')})")


def main() -> None:
  app()


if __name__ == "__main__":
  sys.exit(main())

"""The `jaxviz` command line: it parses flags into settings, calls one application
command (`jaxviz.app.commands`) and prints its outcome.

Options shared by several commands are declared once, as groups (`MODEL`,
`RENDER`) that `with_options` adds to each command and turns into one settings
object (`jaxviz.clikit`: the plumbing, one-line errors, JSON documents). JAX and
the model are imported only once a command runs, so `--help` stays quick.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from jaxviz import layers as layers_lib
from jaxviz.cli_options import (ForceOption, JsonOption, LayerOption, MapsOption, PhotosOption,
                                PhotosTopKOption, PreReluOption, TopImagesOption, compare_options,
                                model_options, render_options)
from jaxviz.clikit import Command, Group, echo_json, user_errors
from jaxviz.progress import ProgressEvents, duration, plural

app = typer.Typer(
    cls=Group,
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


# Commands: settings in, one application call, results out.

def _commands():
  from jaxviz.app import commands  # JAX and the model: not for --help

  return commands


def _end(outcome, random_note: str | None = None) -> None:
  """After printing: the note on random weights; then exit 1 if any map failed."""
  weights = getattr(outcome, "weights", None)
  if random_note and weights is not None and weights.is_random:
    typer.echo(random_note, err=True)
  error = outcome.error()
  if error is not None:
    raise error


RANDOM_RENDERS = "(random weights: these renders show an untrained network)"


@app.command(cls=Command)
@user_errors
def layers(
    arch: Annotated[str, typer.Option(help="Network: vgg11, vgg13, vgg16, vgg19, inceptionv1, "
                                           "googlenet or resnet50.")] =
    layers_lib.DEFAULT_ARCH,
    side: Annotated[int, typer.Option(help="Input side for the output-size column.")] = 224,
    as_json: JsonOption = False,
):
  """List the layers you can render or probe, by index and name.

  Example (offline): [bold]jaxviz layers --json[/bold]
  """
  from jaxviz.app import no_model  # no JAX

  outcome = no_model.layers(arch, side)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(f"{arch}, input {side}x{side}")
  width = max(8, *(len(row["name"]) for row in outcome.rows))
  typer.echo(f"{'index':>5}  {'name':<{width}} {'kind':<6} {'channels':>8}  {'output':<8} reads")
  for row in outcome.rows:
    size = row["output_size"]
    reads = (f"{row['reads']} output (post-ReLU; --pre-relu: raw conv)"
             if row["pre_relu_reads"] else row.get("note") or "its own output")
    typer.echo(f"{row['index']:>5}  {row['name']:<{width}} {row['kind']:<6} "
               f"{row['channels']:>8}  {f'{size}x{size}':<8} {reads}")


@app.command(cls=Command)
@user_errors
def convert(
    src: Annotated[Path, typer.Argument(
        metavar="SRC", help="A torch state dict (.pth): torchvision's VGG, GoogLeNet or "
        "ResNet-50, or lucent's InceptionV1.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .safetensors path.")],
    arch: Annotated[Optional[str], typer.Option(
        help="Expected architecture; by default it is detected from the keys.")] = None,
    as_json: JsonOption = False,
):
  """Convert a torch state dict (.pth) into a jaxviz .safetensors file.

  The state dict must match the architecture's weight table exactly (a file of
  another architecture is named as such); the output is written atomically and
  records the arch and the source file's name and sha256.

  Example (offline, from a local file): [bold]jaxviz convert
  ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth -o vgg16.safetensors[/bold]
  """
  outcome = _commands().convert(src, out, arch)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(f"wrote {out} ({outcome.arch}, {outcome.tensors} tensors)")


@app.command(cls=Command)
@user_errors
@model_options
def classify(
    image: Annotated[Path, typer.Argument(metavar="PHOTO", help="A photo (jpg, png, webp, ...).")],
    top: Annotated[int, typer.Option(help="How many classes to show.")] = 5,
    model: Any = None,
    as_json: JsonOption = False,
):
  """Classify a photo into the model's ImageNet classes: a quick check of the weights.

  The photo gets the probe's preprocessing: RGB in [0, 1], OpenCV-style
  bicubic resize to 224x224, the model's own input normalisation.

  Example: [bold]jaxviz classify cat.jpg --top 5[/bold]

  Offline: [bold]jaxviz classify cat.jpg -w random[/bold] (an untrained network)
  """
  with ProgressEvents() as events:
    outcome = _commands().classify(image, model, top, events=events)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(f"{'prob':>8}  {'logit':>9}  {'class':>5}  label")
  for row in outcome.top:
    typer.echo(f"{row['prob']:8.4f}  {row['logit']:9.3f}  {row['index']:>5}  {row['label']}")
  if outcome.weights.is_random:
    typer.echo("(random weights: these classes mean nothing)")


@app.command(cls=Command)
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
    photos: PhotosOption = None,
    k: PhotosTopKOption = None,
    as_json: JsonOption = False,
    model: Any = None,
    render: Any = None,
):
  """Render feature maps by activation maximisation (the write-up's algorithm).

  Writes OUT/<layer>_<map>.png per map, OUT/grid.png (panels titled "fmap N")
  and OUT/render.json (settings and their hash, weights, device, objective per
  scale, wall time). Rerun the same command to resume an interrupted render.

  Example: [bold]jaxviz render -l 24 -m 271,15 -o renders/[/bold]

  Offline: [bold]jaxviz render -l 10 -m 0:3 -w random --preview -o demo/[/bold]
  """
  with ProgressEvents() as events:
    outcome = _commands().render(layer, maps, out, model, render, pre_relu=pre_relu,
                                 init=init, force=force, photos=photos, k=k, events=events)
  if as_json:
    echo_json(outcome.to_json())
  else:
    written = (f"rendered {plural(len(outcome.rendered), 'map')} in "
               f"{duration(outcome.wall_time_s)}" if outcome.rendered else "rendered nothing new")
    typer.echo(f"{written}; {plural(len(outcome.record['files']), 'map')} in {out} "
               "(grid.png, render.json)")
    if outcome.trust is not None:
      _print_trust(outcome.trust)
  _end(outcome, RANDOM_RENDERS)


@app.command(cls=Command)
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
    model: Any = None,
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
  commands = _commands()
  with ProgressEvents() as events:
    outcome = commands.probe(image, layer, model, top=top, maps=map_ or (), pre_relu=pre_relu,
                             figure=out, events=events)
  # The answer first: the ranking is printed (or written as JSON) before any rendering.
  if as_json:
    echo_json(outcome.to_json())
  else:
    typer.echo(f"{outcome.target.describe()}, {image}")
    typer.echo(f"{'rank':>4}  {'map':>4}  mean")
    for rank, map_index, mean in outcome.top:
      typer.echo(f"{rank:>4}  {map_index:>4}  {mean:.4f}")
    for map_index, (rank, mean) in outcome.asked.items():
      verdict = "in" if rank <= top else "NOT in"
      typer.echo(f"map {map_index}: rank {rank} of {outcome.target.layer.channels}, mean "
                 f"{mean:.4f} ({verdict} the top {top})")
  sys.stdout.flush()
  if out is None:
    return
  with ProgressEvents() as events:
    outcome = commands.probe_figure(outcome, out, render, renders=renders,
                                    with_renders=not no_renders, events=events)
  typer.echo(f"figure: {out}", err=as_json)
  _end(outcome)


@app.command("top-images", cls=Command)
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
    model: Any = None,
):
  """Rank the photos of a folder by a map's mean activation ("dataset examples").

  Unreadable files are skipped with a warning and counted.

  Example: [bold]jaxviz top-images ~/photos -l 24 --map 271 -o top271.png[/bold]

  Offline: [bold]jaxviz top-images ~/photos -l 10 --map 5 -w random[/bold]
  """
  with ProgressEvents() as events:
    outcome = _commands().top_images(folder, layer, model, map=map_, all_maps=all_maps,
                                     top=top, pre_relu=pre_relu, batch=batch, out=out,
                                     events=events)
  if all_maps:
    if as_json or out is None:
      return echo_json(outcome.to_json())
    channels = outcome.target.layer.channels
    return typer.echo(f"wrote the top {top} photos of all {channels} maps to {out} "
                      f"({len(outcome.scores.images)} images, {len(outcome.skipped)} skipped)")
  if out is not None:
    typer.echo(f"wrote {out}", err=as_json)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(f"{'rank':>4}  {'mean':>9}  image")
  for rank, (path, mean) in enumerate(outcome.ranked, 1):
    typer.echo(f"{rank:>4}  {mean:9.4f}  {path}")
  if outcome.skipped:
    typer.echo(f"({plural(len(outcome.skipped), 'unreadable file')} skipped)")


@app.command(cls=Command)
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
    photos: PhotosOption = None,
    k: PhotosTopKOption = None,
    model: Any = None,
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
  with ProgressEvents() as events:
    outcome = _commands().sweep(layer, out, model, render, maps=maps, pre_relu=pre_relu,
                                top_images=top_images, distributed=distributed,
                                process_index=process_index, process_count=process_count,
                                force=force, photos=photos, k=k, events=events)
  done = outcome.render
  if outcome.trust is not None:
    _print_trust(outcome.trust)
  typer.echo(f"{plural(len(done.record['files']), 'map')} in {out} ({len(done.rendered)} "
             f"rendered now in {duration(done.wall_time_s)}); atlas: {outcome.atlas.index}")
  _end(outcome, RANDOM_RENDERS)


@app.command(cls=Command)
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
    model: Any = None,
    render: Any = None,
):
  """Render the same maps with several recipes: one row per map, one column per recipe.

  Each panel is titled with its recipe, its map and its final objective.
  Rendering options apply to every recipe that has them (--recipe is ignored).

  Example: [bold]jaxviz compare -l 24 -m 271,15 --recipes seed,lucid -o fig.png[/bold]

  Offline: [bold]jaxviz compare -l 10 -m 1,2 --recipes seed,lucid -w random --preview[/bold]
  """
  given, options = render
  with ProgressEvents() as events:
    outcome = _commands().compare(layer, maps, recipes, model, given, options,
                                  pre_relu=pre_relu, out=out, events=events)
  typer.echo(f"wrote {out}")
  if outcome.weights.is_random:
    typer.echo(RANDOM_RENDERS, err=True)


@app.command(cls=Command)
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
  with ProgressEvents() as events:
    outcome = _commands().spectrum(folder, out, size, events=events)
  typer.echo(f"wrote {out}: {outcome.magnitude.shape} from {outcome.photos} photos")


@app.command("trust", cls=Command)
@user_errors
@model_options
def trust(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A render or sweep directory.")],
    photos: Annotated[Path, typer.Option(
        "--photos", metavar="FOLDER",
        help="Natural photos to compare each render with (searched recursively).")],
    k: PhotosTopKOption = None,
    as_json: JsonOption = False,
    model: Any = None,
):
  """Add trust numbers to a render or sweep directory: each render beside the photos.

  Per map: its objective against the best photo's (ratio, percentile; above every
  photo is a super-stimulus) and how alike its activations are to those of its
  top-k photos at every layer up to the rendered one, between the top photos'
  own likeness (1) and unrelated photos' (0); below 0.5 it is "off the photos'
  path"; and how much of its objective the render keeps when moved by a few
  pixels (shift robustness; below 0.5 it is "fragile"). README: "Can I trust
  this render?". Forward passes only; the numbers go into render.json. Give
  the --weights the renders were made with.

  Example (offline): [bold]jaxviz trust demo/ --photos ~/photos -w random[/bold]
  """
  with ProgressEvents() as events:
    outcome = _commands().trust(out, photos, model, k=k, events=events)
  if as_json:
    return echo_json(outcome.to_json())
  _print_trust(outcome)


def _print_trust(outcome) -> None:
  """The trust numbers as a table (`commands.TrustOutcome`)."""
  typer.echo(f"{'map':>5}  {'ratio':>6}  {'pctile':>6}  {'path':>6}  {'shift':>6}  notes")
  number = lambda value: "-" if value is None else f"{value:.2f}"  # noqa: E731
  for result in outcome.maps:
    notes = ", ".join(note for note, flagged in (("super-stimulus", result.super_stimulus),
                                                 ("OFF the photos' path", result.off_path),
                                                 ("fragile to shifts", result.fragile))
                      if flagged)
    typer.echo(f"{result.map:>5}  {number(result.ratio):>6}  {result.percentile:6.1f}  "
               f"{number(result.similarity):>6}  {number(result.shift_robustness):>6}  {notes}")
  typer.echo(f"{plural(len(outcome.maps), 'map')} against {plural(len(outcome.photos), 'photo')}"
             f" (k = {outcome.k}, {len(outcome.path)} layers); written to "
             f"{', '.join(p.name for p in outcome.records)}")


@app.command(cls=Command)
@user_errors
def info(
    png: Annotated[Path, typer.Argument(metavar="PNG", help="A PNG that jaxviz wrote.")],
    as_json: JsonOption = False,
):
  """Show what made a jaxviz PNG: layer, map, recipe, settings hash, weights, version.

  Every PNG jaxviz writes (renders, grids, figures) carries this in its text chunks.

  Example (offline): [bold]jaxviz info renders/24_271.png[/bold]
  """
  from jaxviz.app import no_model  # no JAX
  from jaxviz.fileio import display

  outcome = no_model.info(png)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(display(outcome.title or png))
  if outcome.provenance.get("random_weights") is True:
    typer.echo("RANDOM weights: an untrained network")
  rows = {display(key): display(value) for key, value in outcome.provenance.items()}
  width = max(len(key) for key in rows)
  for key, value in sorted(rows.items()):
    typer.echo(f"  {key:<{width}}  {value}")
  found = outcome.trust
  if found is not None:
    number = lambda name: "n/a" if found[name] is None else f"{found[name]:.2f}"  # noqa: E731
    typer.echo(f"trust (against {found['photos']} photos, k = {found['k']}): ratio to the best "
               f"photo {number('ratio')}, percentile {found['percentile']:.0f}"
               + (", a super-stimulus" if found["super_stimulus"] else "")
               + f"; path similarity {number('similarity')}"
               + (" (OFF the photos' path)" if found["off_path"] else "")
               + f"; shift robustness {number('shift_robustness')}"
               + (" (fragile)" if found["fragile"] else ""))


@app.command("atlas", cls=Command)
@user_errors
def atlas_command(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="A render or sweep directory.")],
    top_images: TopImagesOption = None,
):
  """Rebuild OUT/index.html, the offline atlas of a render or sweep directory.

  Example (offline): [bold]jaxviz atlas sweeps/conv5_1 --top-images conv5_1_photos.json[/bold]
  """
  from jaxviz.app import no_model  # no JAX

  built = no_model.atlas(out, top_images)
  for map_index, filename in sorted(built.damaged.items()):
    typer.echo(f"warning: {filename} (map {map_index}) is missing or not the PNG its record "
               "made; left out (rerun the command that made it to render it again)", err=True)
  typer.echo(f"atlas: {built.index} ({plural(built.maps, 'map')})")


@app.command(cls=Command)
@user_errors
def cache(
    clear: Annotated[bool, typer.Option(
        "--clear", help="Remove everything in it (it is remade on demand).")] = False,
    as_json: JsonOption = False,
):
  """List what jaxviz's user cache holds, with sizes; --clear empties it.

  It keeps converted weights and compiled programs so that later runs start
  fast; random weights are never stored. Downloads are in torch's own cache.

  Example: [bold]jaxviz cache[/bold]
  """
  from jaxviz.app import no_model  # no JAX

  outcome = no_model.cache(clear)
  if as_json:
    return echo_json(outcome.to_json())
  typer.echo(f"{'removed from' if outcome.cleared else 'cache:'} {outcome.directory}")
  for entry in outcome.entries:
    typer.echo(f"  {entry.bytes / 1e6:10.1f} MB  {entry.name:<28} {entry.what}")
  typer.echo(f"  {outcome.bytes / 1e6:10.1f} MB  in all" if outcome.entries else "  (empty)")


def main() -> None:
  app()


if __name__ == "__main__":
  sys.exit(main())

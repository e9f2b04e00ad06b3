"""What the Python API returns, drawn as the CLI draws it: `jaxviz.figure`, `show`, `save`.

  images = jaxviz.render("conv5_1", [271, 15], weights="random")
  jaxviz.show(images, maps=[271, 15])          # the render grid, panels "fmap 271", ...
  jaxviz.show(jaxviz.compare("conv5_1", [271], out=None))  # a row per map, a column per recipe
  jaxviz.save(jaxviz.probe_photo("house.jpg", "conv5_1"), "probe.png")

Conventions:
  * One place decides how each result is drawn (`figure`), with `figures.py`'s
    functions, the ones the commands draw with: images as `render`'s grid
    (`grid.png`), a `CompareOutcome` as `compare`'s figure, a `ProbeOutcome`
    as `probe`'s figure. `show` and `save` only display or write that figure.
  * The module is not named `show`: importing a submodule sets it as an
    attribute of the package, which would hide the function `jaxviz.show`.
  * Figures are matplotlib `Figure`s on an Agg canvas, never pyplot's: they
    need no display and leave the user's backend alone.
  * Anything else (another type, a wrong shape, non-finite or out-of-range
    pixels, an option the result has no use for) is one `JaxvizError` line.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

from jaxviz import figures
from jaxviz.errors import JaxvizError

KINDS = "images from jaxviz.render (an array), jaxviz.compare's or jaxviz.probe_photo's result"


def figure(result, *, maps: Sequence[int] | None = None, titles: Sequence[str] | None = None,
           title: str | None = None, renders: dict | None = None) -> Figure:
  """`result` drawn as the CLI draws it, as a matplotlib `Figure` (Agg; no display).

  Args:
    result: one of
      * images, as `jaxviz.render` returns them: (N, S, S, 3) -> N panels,
        (N, K, S, S, 3) (diversity K) -> N panels of K images side by side,
        or one (S, S, 3) image; floats in [0, 1] or uint8 0..255 (a NumPy or
        JAX array, or a list of images of one size);
      * `jaxviz.compare(...)`'s `CompareOutcome` -> one row per map, one
        column per recipe, each panel titled with its final objective;
      * `jaxviz.probe_photo(...)`'s `ProbeOutcome` -> the photo, every map's
        mean activation with the top maps and the asked ones marked, and
        below the top maps' renders where there are any.
    maps: images only: the map of each image, N ints; panels read "fmap N".
    titles: images only: N panel titles instead (default "image 0", ...).
    title: images only: a title over the grid.
    renders: a probe only: {map: (S, S, 3) image, as above} drawn below for
      the top maps among them (e.g. `dict(zip(maps, jaxviz.render(...)))`);
      default: the renders its `figure=` drew, if it drew one.
  Returns:
    the `Figure` (`figure.savefig`, or `jaxviz.save` / `jaxviz.show`).
  """
  if hasattr(result, "shape") or isinstance(result, (list, tuple)):
    _only_for("a probe", renders=renders)
    return _images_figure(result, maps, titles, title)
  from jaxviz.app import commands  # the outcome types; loaded already if `result` is one

  if isinstance(result, commands.CompareOutcome):
    _only_for("images", maps=maps, titles=titles, title=title, renders=renders)
    return figures.compare_figure(result.images, result.objectives, result.maps, None,
                                  commands.compare_title(result.weights, result.target))
  if isinstance(result, commands.ProbeOutcome):
    _only_for("images", maps=maps, titles=titles, title=title)
    return _probe_figure(result, renders)
  raise JaxvizError(f"jaxviz.figure draws {KINDS}; got {type(result).__name__}")


def show(result, **options) -> Figure | None:
  """Displays `figure(result, **options)` in a Jupyter notebook, as a PNG output, and
  returns None (so that the cell does not show it twice). Elsewhere (a script, a
  terminal) there is nowhere to show it: returns the `Figure`, to write with
  `jaxviz.save` or `figure.savefig`."""
  drawn = figure(result, **options)
  if not _in_notebook():
    return drawn
  from IPython.display import Image, display

  buffer = io.BytesIO()
  # PNG bytes, not the Figure: a Figure is drawn inline only when pyplot's inline
  # backend has been set up, which a figure made without pyplot never triggers.
  drawn.savefig(buffer, format="png", dpi=100)
  display(Image(data=buffer.getvalue(), format="png"))
  return None


def save(result, path: str | os.PathLike, *, dpi: int = 100, **options) -> Path:
  """Writes `figure(result, **options)` to `path` as a PNG, atomically (a reader never
  sees half a file); returns the path. `path` must end in ".png"."""
  path = Path(path)
  if path.suffix.lower() != ".png":
    raise JaxvizError(f"path: jaxviz.save writes a PNG; give a path ending in .png, got "
                      f"{str(path)!r}")
  figures.save_figure(figure(result, **options), path, dpi=dpi)
  return path


def _only_for(kind: str, **options) -> None:
  """Refuses an option the result has no use for, rather than ignoring it."""
  given = [name for name, value in options.items() if value is not None]
  if given:
    raise JaxvizError(f"{given[0]}: only for {kind}; leave it out for this result")


def _checked_images(images, name: str, ndims: tuple[int, ...]) -> np.ndarray:
  """`images` as floats, their shape and pixels checked, or one JaxvizError line."""
  try:
    array = np.asarray(images)
  except ValueError:  # ragged lists
    raise JaxvizError(f"{name}: expected an array of images of one size") from None
  shapes = {3: "(S, S, 3)", 4: "(N, S, S, 3)", 5: "(N, K, S, S, 3)"}
  if array.ndim not in ndims or array.shape[-1] != 3 or 0 in array.shape:
    expected = " or ".join(shapes[n] for n in ndims)
    raise JaxvizError(f"{name}: expected {expected} RGB images, got shape {array.shape}")
  if array.dtype == np.uint8:  # 0..255, as photos are read (`fileio.as_photo`)
    return array.astype(np.float32) / np.float32(255)
  if not np.issubdtype(array.dtype, np.floating):
    raise JaxvizError(f"{name}: expected floats in [0, 1] or uint8, got dtype {array.dtype}")
  bad = int(array.size - np.count_nonzero(np.isfinite(array)))
  if bad:
    raise JaxvizError(f"{name}: {bad} pixel values are not finite (NaN or inf); a render "
                      "that diverged cannot be drawn")
  low, high = float(array.min()), float(array.max())
  if low < 0 or high > 1:
    raise JaxvizError(f"{name}: expected pixel values in [0, 1], got {low:.4g}..{high:.4g} "
                      "(a 0..255 image should be uint8)")
  return array


def _images_figure(images, maps, titles, title) -> Figure:
  """`render`'s grid (`grid.png`): 3 columns, wider for whole layers."""
  array = _checked_images(images, "images", (3, 4, 5))
  if array.ndim == 3:
    array = array[None]
  if array.ndim == 5:  # a diversity group: its K images side by side, as the CLI's PNGs
    from jaxviz.app import rendering

    array = np.stack([rendering.map_image(group) for group in array])
  if maps is not None and titles is not None:
    raise JaxvizError("titles: give maps (panels 'fmap N') or titles, not both")
  labels = maps if maps is not None else titles
  if labels is not None and (isinstance(labels, str) or len(labels) != len(array)):
    kind = "maps" if maps is not None else "titles"
    raise JaxvizError(f"{kind}: expected one per image ({len(array)}), got {labels!r:.60}")
  if maps is not None:
    try:
      maps = [int(m) for m in maps]
    except (TypeError, ValueError):
      raise JaxvizError(f"maps: expected map indices, got {maps!r:.60}") from None
    return figures.render_grid(list(array), maps, None, suptitle=title)
  titles = [f"image {i}" for i in range(len(array))] if titles is None else list(titles)
  return figures.titled_grid(list(array), [str(t) for t in titles], None,
                             figures.grid_columns(len(array)), title)


def _probe_figure(outcome, renders) -> Figure:
  """`probe`'s figure: the renders given, else those its own figure drew, else none."""
  from jaxviz import store
  from jaxviz.app import commands

  result = outcome.result
  top_maps = [m for _, m, _ in result.top]
  recipe_name = None
  if renders is not None:
    if not isinstance(renders, dict):
      raise JaxvizError(f"renders: expected {{map: image}}, got {type(renders).__name__}")
    try:
      renders = {int(m): _checked_images(image, f"renders[{m}]", (3,))
                 for m, image in renders.items()}
    except (TypeError, ValueError):
      raise JaxvizError(f"renders: expected map indices as keys, got "
                        f"{list(renders)!r:.60}") from None
  elif outcome.renders is not None:
    record = outcome.renders.record
    renders = store.load_renders(outcome.renders.out, top_maps, record["identity_hash"])
    recipe_name = record["identity"]["recipe"]["name"]
  return figures.probe_figure(result.photo, result.means, top_maps,
                              outcome.target.describe(), renders, None,
                              footnote=commands.probe_footnote(outcome.weights, recipe_name),
                              asked=result.asked)


def _in_notebook() -> bool:
  """Whether this runs in a Jupyter kernel (not a script, a terminal IPython or no
  IPython at all, where a PNG output has nowhere to go)."""
  try:
    from IPython import get_ipython
  except ImportError:
    return False
  return hasattr(get_ipython(), "kernel")

"""Figures in the write-up's style, drawn with matplotlib's object API.

No pyplot: a `Figure` with an Agg canvas holds no global state, so figures can
be drawn from library code and threads without touching the user's backend.
Each figure is returned, and saved as a PNG where a `path` is given (None: not
saved, for `jaxviz.show`).
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from jaxviz import fileio

CELL_INCHES = 2.6


def new_figure(width: float, height: float) -> Figure:
  figure = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(figure)
  return figure


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100,
                text: dict[str, str] | None = None) -> None:
  """Saves a PNG atomically, with `text` chunks (`fileio.png_text`) as its metadata."""
  with fileio.atomic_write(path) as tmp:
    figure.savefig(tmp, format="png", dpi=dpi, metadata=text or {})


def grid_width(columns: int, suptitle: str | None) -> float:
  """Inches: `columns` cells, and at least the suptitle's width in one line (a grid of
  one or two columns would otherwise cut it at both sides)."""
  title_inches = 0.085 * len(suptitle) if suptitle else 0.0  # ~10 pt characters
  return max(CELL_INCHES * columns, title_inches)


def grid_columns(count: int) -> int:
  """3 columns as the write-up shows them; wider for whole layers."""
  return max(3, math.ceil(math.sqrt(count))) if count > 9 else min(3, max(count, 1))


def draw_image_grid(figure: Figure, images: Sequence[np.ndarray], titles: Sequence[str],
                    columns: int, subplot_spec=None) -> None:
  """Images (H, W, 3) in [0, 1] in rows of `columns`, each titled, axes off."""
  rows = math.ceil(len(images) / columns)
  grid = (subplot_spec.subgridspec(rows, columns) if subplot_spec is not None
          else figure.add_gridspec(rows, columns))
  for i, (image, title) in enumerate(zip(images, titles)):
    axes = figure.add_subplot(grid[i // columns, i % columns])
    axes.imshow(np.clip(image, 0, 1), interpolation="lanczos" if image.shape[0] > 256 else None)
    axes.set_title(title, fontsize=10)
    axes.set_xticks([])
    axes.set_yticks([])


def titled_grid(images: Sequence[np.ndarray], titles: Sequence[str],
                path: str | os.PathLike | None, columns: int, suptitle: str | None = None,
                text: dict[str, str] | None = None) -> Figure:
  """Images in rows of `columns`, each titled, optionally under a suptitle.

  The figure is at least wide enough for the suptitle in one line (a one-map grid
  would otherwise cut it at both sides)."""
  rows = math.ceil(len(images) / columns)
  figure = new_figure(grid_width(columns, suptitle),
                      CELL_INCHES * rows + (0.4 if suptitle else 0))
  draw_image_grid(figure, images, titles, columns)
  if suptitle:
    figure.suptitle(suptitle, fontsize=10)
  if path is not None:
    save_figure(figure, path, text=text)
  return figure


def render_grid(images: Sequence[np.ndarray], maps: Sequence[int],
                path: str | os.PathLike | None, suptitle: str | None = None,
                text: dict[str, str] | None = None) -> Figure:
  """The write-up's render figure: one panel per map titled "fmap N", in the given order."""
  return titled_grid(images, [f"fmap {m}" for m in maps], path, grid_columns(len(images)),
                     suptitle, text)


def probe_figure(photo: np.ndarray, means: np.ndarray, top_maps: Sequence[int],
                 layer_title: str, renders: dict[int, np.ndarray] | None,
                 path: str | os.PathLike | None, footnote: str | None = None,
                 asked: dict[int, tuple[int, float]] | None = None,
                 text: dict[str, str] | None = None) -> Figure:
  """The write-up's hypothesis-test figure (`seed_probe_figure_house.png`).

  Top row: the resized photo titled "Image"; beside it, spanning two columns,
  the per-channel mean activations clipped at 0 (x: the channel index) with a
  red dashed line at each top-k channel, and each map the user `asked` about
  (map: (rank, mean)) marked in orange with its rank. Below: the renders of
  the top-k maps, 3 columns, titled "fmap N" (omitted when `renders` is
  None). Returns the figure.
  """
  columns = 3
  shown = [m for m in top_maps if renders is not None and m in renders]
  render_rows = math.ceil(len(shown) / columns)
  figure = new_figure(CELL_INCHES * 3.6, CELL_INCHES * 1.2 * (1 + render_rows)
                      + (0.3 if footnote else 0))
  grid = figure.add_gridspec(1 + render_rows, columns)

  photo_axes = figure.add_subplot(grid[0, 0])
  photo_axes.imshow(np.clip(photo, 0, 1))
  photo_axes.set_title("Image")
  photo_axes.set_xticks([])
  photo_axes.set_yticks([])

  plot = figure.add_subplot(grid[0, 1:])
  plot.plot(np.arange(len(means)), np.clip(means, 0, None))
  for map_index in top_maps:
    plot.axvline(map_index, color="red", linestyle="--", alpha=0.4)
  for map_index, (rank, _) in (asked or {}).items():
    plot.axvline(map_index, color="tab:orange", linewidth=1.5)
    plot.annotate(f"map {map_index}: rank {rank}", (map_index, 1.0),
                  xycoords=("data", "axes fraction"), xytext=(3, -12),
                  textcoords="offset points", color="tab:orange", fontsize=8)
  plot.set_xlim(0, len(means))
  plot.set_xlabel("feature map (channel index)")
  plot.set_ylabel("mean activation")
  plot.set_title(f"Top {len(top_maps)} Feature Maps from {layer_title}")

  if shown:
    draw_image_grid(figure, [renders[m] for m in shown], [f"fmap {m}" for m in shown],
                    columns, subplot_spec=grid[1:, :])
  if footnote:
    figure.supxlabel(footnote, fontsize=8)
  if path is not None:
    save_figure(figure, path, text=text)
  return figure


def compare_figure(images: dict[str, dict[int, np.ndarray]],
                   objectives: dict[str, dict[int, float]], maps: Sequence[int],
                   path: str | os.PathLike | None, suptitle: str,
                   text: dict[str, str] | None = None) -> Figure:
  """One row per map, one column per recipe, each panel titled with the recipe, the map
  and its final objective (`jaxviz compare`)."""
  recipes = list(images)
  panels, titles = [], []
  for map_index in maps:
    for recipe in recipes:
      panels.append(images[recipe][map_index])
      titles.append(f"{recipe}: fmap {map_index}\nobjective {objectives[recipe][map_index]:.3g}")
  rows, columns = len(maps), len(recipes)
  figure = new_figure(grid_width(columns, suptitle), CELL_INCHES * rows + 0.5)
  draw_image_grid(figure, panels, titles, columns)
  figure.suptitle(suptitle, fontsize=10)
  if path is not None:
    save_figure(figure, path, text=text)
  return figure

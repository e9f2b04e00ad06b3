"""Figures in the write-up's style, drawn with matplotlib's object API.

No pyplot: a `Figure` with an Agg canvas holds no global state, so figures can
be drawn from library code and threads without touching the user's backend.
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


def save_figure(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
  with fileio.atomic_write(path) as tmp:
    figure.savefig(tmp, format="png", dpi=dpi)


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


def render_grid(images: Sequence[np.ndarray], maps: Sequence[int], path: str | os.PathLike,
                suptitle: str | None = None) -> None:
  """The write-up's render figure: one panel per map titled "fmap N"."""
  columns = grid_columns(len(images))
  rows = math.ceil(len(images) / columns)
  figure = new_figure(CELL_INCHES * columns, CELL_INCHES * rows + (0.4 if suptitle else 0))
  draw_image_grid(figure, images, [f"fmap {m}" for m in maps], columns)
  if suptitle:
    figure.suptitle(suptitle, fontsize=10)
  save_figure(figure, path)

"""What the canonical networks' tables share (no JAX): parameter key names and the
modules a tap needs.

Conventions:
  * A parameter key is the torch module path with "." before an index turned into
    "_" ("layer3.2.bn1" -> "layer3_2.bn1"), so that "." only nests (Flax's
    `traverse_util` separator) and each Flax submodule name is a valid attribute.
  * A table lists its taps in the order the network computes them, and a tap
    whose `kind` holds parameters (a conv, a batch norm, the dense layer) is the
    module of that name.
"""

from __future__ import annotations

import re
from typing import Iterable

from jaxviz.layers import Layer, Shrink


def flax_name(path: str) -> str:
  """A torch module path as a parameter key prefix: "." before an index becomes "_"."""
  return re.sub(r"\.(\d+)", r"_\1", path)


def module_names(param_shapes: dict[str, tuple[int, ...]]) -> tuple[str, ...]:
  """The modules that hold parameters, in the table's order ("conv1", "bn1", ...)."""
  return tuple(dict.fromkeys(key.rpartition(".")[0] for key in param_shapes))


def needed_modules(arch: str, taps: tuple[Layer, ...], tap: str,
                   kinds: Iterable[str]) -> tuple[str, ...]:
  """Every module of a kind in `kinds` computed up to `tap` in the table's order: exactly
  what the network's `Network(stop_at=tap)` runs, so a superset of `tap`'s own inputs
  only within its block (a later branch's tap also lists the earlier branches).

  Raises:
    KeyError: for a name that is not a tap.
  """
  by_name = {layer.name: layer for layer in taps}
  if tap not in by_name:
    raise KeyError(f"unknown {arch} tap {tap!r}")
  kinds = frozenset(kinds)
  return tuple(flax_name(layer.name) for layer in taps[: by_name[tap].index + 1]
               if layer.kind in kinds)


class TapRows:
  """A table's taps built in network order, each with every strided op up to it: `add`
  appends a tap after the `shrink` its own op applies (if any) joins the running list."""

  def __init__(self) -> None:
    self.rows: list[Layer] = []
    self.shrinks: tuple[Shrink, ...] = ()

  def add(self, name: str, kind: str, channels: int, shrink: Shrink | None = None,
          what: str = "") -> None:
    if shrink is not None:
      self.shrinks += (shrink,)
    self.rows.append(Layer(len(self.rows), name, kind, channels, 0, self.shrinks, what))

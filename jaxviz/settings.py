"""Settings objects: each use case's options, validated once, in the library's words.

A check raises `SettingError(name, problem)` naming the setting as the library
names it (`size0`, `weight_decay`); the CLI shows the same name as its flag
(`--size0`, `--weight-decay`). Checks that need the loaded network (a layer's
smallest input) take it as an argument; everything else is checked before
any weights load.
"""

from __future__ import annotations

import dataclasses

import jax

from jaxviz.errors import SettingError
from jaxviz.execution import check_batch
from jaxviz.optvis.recipes import Schedule
from jaxviz.optvis.render import check_driver, check_dtype

# JAX makes a PRNG key from the low 32 bits of a seed unless 64-bit mode is on,
# so two seeds that differ above bit 32 would silently render the same images.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
  """A PRNG seed: an integer in 0..2**32 - 1."""
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
    raise SettingError(name, f"must be an integer from 0 to {MAX_SEED}, got {seed!r}")
  return seed


def prng_key(seed: int, name: str = "seed") -> jax.Array:
  """The PRNG key of a checked seed: where every user seed becomes a key."""
  return jax.random.key(check_seed(seed, name))


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """How maps are rendered (shared by render, probe's figure and sweep).

  Attributes:
    seed: map k's randomness is `fold_in(key(seed), k)`.
    schedule: the write-up's schedule (SPEC §2).
    batch: maps per vmapped batch, or "auto" (`execution.auto_batch`).
    dtype: "float32", or "float64" (CPU) to equal PyTorch.
    driver: "auto", "loop" or "scan" (`optvis.render`).
  """

  seed: int = 0
  schedule: Schedule = Schedule()
  batch: int | str = "auto"
  dtype: str = "float32"
  driver: str = "auto"

  def check(self) -> "RenderOptions":
    """Checks everything that needs no weights; returns the options with `batch` parsed."""
    check_seed(self.seed)
    check_dtype(self.dtype)
    check_driver(self.driver)
    self.schedule.check(min_side=None)  # sizes are checked against the layer, once known
    return dataclasses.replace(self, batch=check_batch(self.batch))

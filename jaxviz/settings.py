"""Settings objects: each use case's options, validated once, in the library's words.

A check raises `SettingError(name, problem)` naming the setting as the library
names it (`size0`, `weight_decay`); the CLI shows the same name as its flag
(`--size0`, `--weight-decay`). Checks that need the loaded network (a layer's
smallest input) take it as an argument; everything else is checked before
any weights load.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxviz import fileio
from jaxviz.errors import SettingError
from jaxviz.execution import check_batch
from jaxviz.optvis.params import Constant, as_spectrum
from jaxviz.optvis.recipes import Lucid, MacoRecipe, Schedule
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
class ModelSettings:
  """Which network and weights, and how it computes (the CLI's "Network" options).

  Attributes:
    weights: "imagenet", "random[:SEED]", a path (`app.load_weights`), or loaded
      `weights.Weights`.
    arch: the architecture for "imagenet" and "random"; files record their own.
    precision: conv/matmul precision, one of `vgg.PRECISIONS`.
  """

  weights: object = "imagenet"
  arch: str = "vgg16"
  precision: str = "default"

  def check(self) -> "ModelSettings":
    from jaxviz import nets, vgg

    vgg.check_precision(self.precision)
    nets.check_arch(self.arch)
    return self


RECIPES = ("seed", "lucid", "maco")
DIVERSITY_WEIGHT = 100.0  # lucent's example weight: channel - 1e2 * diversity


def parse_recipes(text: str) -> list[str]:
  """'seed, lucid' -> ['seed', 'lucid']: recipes side by side (`jaxviz compare`)."""
  names = [name.strip() for name in text.split(",") if name.strip()]
  if not names or any(name not in RECIPES for name in names):
    raise SettingError("recipes", f"must name some of {', '.join(RECIPES)}, got {text!r}")
  repeated = sorted({name for name in names if names.count(name) > 1})
  if repeated:
    raise SettingError("recipes", f"names {repeated[0]} twice; each recipe is one column")
  return names


def read_spectrum(path) -> Constant:
  """A magnitude spectrum `.npy` file (`jaxviz spectrum`), (3, S, S // 2 + 1), finite."""
  path = Path(path)
  where = fileio.display(path)
  try:
    loaded = np.load(path, allow_pickle=False)
  except (OSError, ValueError, EOFError) as error:  # EOFError: an empty file
    reason = getattr(error, "strerror", None) or (str(error).splitlines() or ["empty"])[0]
    raise SettingError("spectrum", f"{where} is not a readable .npy array "
                                   f"({fileio.display(reason or 'empty file')})") from None
  if not isinstance(loaded, np.ndarray):  # a .npz archive
    loaded.close()
    raise SettingError("spectrum", f"{where} is an .npz archive; give the .npy file that "
                                   "`jaxviz spectrum` writes")
  return as_spectrum(loaded, where)


@dataclasses.dataclass(frozen=True)
class RecipeOptions:
  """The recipe and its settings as the command line gives them: None is "the
  recipe's default"; a setting the recipe does not have is refused if given.

  `build()` -> `Schedule` (seed: SPEC §2), `Lucid` or `MacoRecipe`.
  """

  recipe: str = "seed"
  size0: int | None = None
  scales: int | None = None
  upscale: float | None = None
  steps: int | None = None
  lr: float | None = None
  weight_decay: float | None = None
  blur: int | None = None
  decay_power: float | None = None
  transforms: bool | None = None
  spectrum: str | None = None
  preview: bool = False

  _OWN = {"seed": ("size0", "scales", "upscale", "steps", "lr", "weight_decay", "blur"),
          "lucid": ("size0", "steps", "lr", "decay_power", "transforms"),
          "maco": ("size0", "steps", "lr", "spectrum")}

  def build(self, strict: bool = True):
    """The recipe's settings object; with `strict` False, settings the recipe does not
    have are left out instead of refused (`jaxviz compare` shares them)."""
    if self.recipe not in RECIPES:
      raise SettingError("recipe", f"must be one of {', '.join(RECIPES)}, got {self.recipe!r}")
    given = {name: value for name, value in dataclasses.asdict(self).items()
             if name not in ("recipe", "preview") and value is not None
             and (strict or name in self._OWN[self.recipe])}
    foreign = [name for name in given if name not in self._OWN[self.recipe]]
    if foreign:
      raise SettingError(foreign[0], f"is not a setting of --recipe {self.recipe} (its "
                                     f"settings: {', '.join(self._OWN[self.recipe])})")
    if self.recipe == "maco":
      if self.spectrum is None:
        raise SettingError("spectrum", "is needed by --recipe maco: a magnitude spectrum made "
                                       "from photos by `jaxviz spectrum FOLDER --out FILE.npy`")
      given["spectrum"] = read_spectrum(self.spectrum)
      size = given["spectrum"].array.shape[1]
      given.setdefault("size0", size)
      defaults = MacoRecipe(given["spectrum"], size0=given["size0"])
    else:
      defaults = Schedule() if self.recipe == "seed" else Lucid()
    if self.preview:
      defaults = defaults.preview()
    return dataclasses.replace(defaults, **given)


@dataclasses.dataclass(frozen=True)
class RenderOptions:
  """How maps are rendered (shared by render, probe's figure, sweep and compare).

  Attributes:
    seed: map k's randomness is `fold_in(key(seed), k)`.
    schedule: the recipe's settings: `Schedule` (the write-up's, SPEC §2),
      `Lucid` or `MacoRecipe` (`optvis.recipes`).
    batch: maps per vmapped batch, or "auto" (`execution.auto_batch`).
    dtype: "float32", or "float64" (CPU) to equal PyTorch.
    driver: "auto", "loop" or "scan" (`optvis.render`).
    diversity: images rendered together per map; above 1 the objective adds
      `DIVERSITY_WEIGHT` times lucid's diversity term across them.
    preview: the schedule is `--preview`'s (recorded as such).
    trace: record each map's objective at every step (`trace` in render.json),
      for comparing a render step by step with another implementation.
  """

  seed: int = 0
  schedule: Schedule | Lucid | MacoRecipe = Schedule()
  batch: int | str = "auto"
  dtype: str = "float32"
  driver: str = "auto"
  diversity: int = 1
  preview: bool = False
  trace: bool = False

  def check(self) -> "RenderOptions":
    """Checks everything that needs no weights; returns the options with `batch` parsed."""
    check_seed(self.seed)
    check_dtype(self.dtype)
    check_driver(self.driver)
    if not 1 <= self.diversity <= 64:
      raise SettingError("diversity", f"must be in 1..64, got {self.diversity}")
    self.schedule.check(min_side=None)  # sizes are checked against the layer, once known
    return dataclasses.replace(self, batch=check_batch(self.batch))

"""Recipes: an objective, a parameterisation and transforms, with an optimiser and a schedule.

A `Recipe` is everything that decides a render besides the model, its
parameters, the key and the map: `spec()` describes it for records and
identity hashes, so a resumed render never mixes recipes. `Schedule` holds the
write-up's settings (SPEC §2) and builds its recipe, the default.
"""

from __future__ import annotations

import dataclasses
import math

import optax

from jaxviz.errors import SettingError
from jaxviz.optvis import objectives as objectives_lib
from jaxviz.optvis import params as params_lib
from jaxviz.optvis import transforms as transforms_lib

# Beyond these a render is a mistake rather than a choice: one 4096 px map of
# conv5_1 keeps ~10 GB of activations alive, and sides are computed per scale.
MAX_SIDE = 4096
MAX_SCALES = 64


@dataclasses.dataclass(frozen=True)
class Adam:
  """Adam with L2 weight decay added to the gradient first: torch's Adam(weight_decay=...)."""

  lr: float
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8

  def make(self) -> optax.GradientTransformation:
    adam = optax.adam(self.lr, b1=self.b1, b2=self.b2, eps=self.eps)
    if not self.weight_decay:
      return adam
    return optax.chain(optax.add_decayed_weights(self.weight_decay), adam)

  def spec(self) -> dict:
    return {"adam": dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How maps are rendered: one scale after another, a fresh optimiser each.

  Attributes:
    objective: what is maximised (`objectives`).
    param: how the variable becomes images (`params`).
    optimizer: e.g. `Adam`; a frozen dataclass with `make()` and `spec()`.
    sides: the image side at each scale.
    steps: optimisation steps at each scale.
    transforms: applied to the images before the model each step.
    group: images optimised together per map (objectives may couple them).
  """

  objective: objectives_lib.Objective
  param: params_lib.Parameterisation
  optimizer: Adam
  sides: tuple[int, ...]
  steps: tuple[int, ...]
  transforms: transforms_lib.Transform = transforms_lib.Compose()
  group: int = 1

  def total_steps(self) -> int:
    return sum(self.steps)

  def spec(self) -> dict:
    return {"objective": self.objective.spec(), "param": self.param.spec(),
            "optimizer": self.optimizer.spec(), "sides": list(self.sides),
            "steps": list(self.steps), "transforms": self.transforms.spec(),
            "group": self.group}


@dataclasses.dataclass(frozen=True)
class Schedule:
  """The write-up's settings (SPEC §2); every one is an option.

  Steps per scale: `steps` while `scale <= scales / 2`, then `int(steps * 1.3)`.
  Side of scale i+1: `int(upscale * side_i)`, bicubic resize, `blur` box blur.
  """

  size0: int = 56
  scales: int = 12
  upscale: float = 1.2
  steps: int = 75
  lr: float = 0.01
  weight_decay: float = 1e-6
  blur: int = 5

  def sides(self) -> tuple[int, ...]:
    """Side of each scale: 56, 67, 80, ..., 408 at the defaults."""
    sides = [self.size0]
    for _ in range(self.scales - 1):
      sides.append(int(self.upscale * sides[-1]))
    return tuple(sides)

  def steps_at(self, scale: int) -> int:
    return self.steps if scale <= self.scales / 2 else int(self.steps * 1.3)

  def total_steps(self) -> int:
    return sum(self.steps_at(i) for i in range(self.scales))

  def recipe(self, objective: objectives_lib.Objective) -> Recipe:
    """SPEC §2: normalised pixels, no transforms, Adam with L2 decay, these scales."""
    return Recipe(objective=objective, param=params_lib.NormalisedPixels(self.blur),
                  optimizer=Adam(self.lr, self.weight_decay), sides=self.sides(),
                  steps=tuple(self.steps_at(i) for i in range(self.scales)))

  def _largest_side(self) -> float:
    """The last scale's side, or inf once a side would pass MAX_SIDE (a huge upscale
    must not reach int(), which overflows)."""
    side = self.size0
    for _ in range(self.scales - 1):
      grown = self.upscale * side
      if grown > MAX_SIDE:
        return math.inf
      side = int(grown)
    return side

  def check(self, min_side: int | None = 1, layer_label: str = "the layer") -> None:
    """Raises SettingError for settings the loop cannot run, non-finite numbers included.

    `min_side` is the smallest input the layer read accepts (`layer_label` names
    it); None leaves out the checks of sizes, until the layer is known.
    """
    for name in ("lr", "weight_decay", "upscale"):
      if not math.isfinite(getattr(self, name)):
        raise SettingError(name, f"must be a finite number, got {getattr(self, name)}")
    if not 1 <= self.scales <= MAX_SCALES:
      raise SettingError("scales", f"must be in 1..{MAX_SCALES}, got {self.scales}")
    if self.steps < 1:
      raise SettingError("steps", f"must be at least 1, got {self.steps}")
    if not self.lr > 0:
      raise SettingError("lr", f"must be positive, got {self.lr}")
    if not self.weight_decay >= 0:
      raise SettingError("weight_decay", f"must be 0 or more, got {self.weight_decay}")
    if self.blur < 1 or self.blur % 2 == 0:
      raise SettingError("blur", f"must be a positive odd number (1 = none), got {self.blur}")
    if not self.upscale >= 1:
      raise SettingError("upscale", f"must be at least 1, got {self.upscale}")
    if min_side is None:
      return
    if self.size0 < min_side:
      raise SettingError("size0", f"{self.size0} is too small for {layer_label}: the minimum "
                                  f"is {min_side}")
    if self._largest_side() > MAX_SIDE:
      raise SettingError("size0", f"{self.size0} with upscale {self.upscale} over "
                                  f"{self.scales} scales gives sides above {MAX_SIDE} px")
    if self.scales > 1 and self.size0 <= self.blur // 2:
      raise SettingError("blur", f"{self.blur} needs sides above {self.blur // 2}")

"""Recipes: an objective, a parameterisation and transforms, with an optimiser and a schedule.

A `Recipe` is everything that decides a render besides the model, its
parameters, the key and the map: `spec()` describes it for records and
identity hashes, so a resumed render never mixes recipes. `Schedule` holds the
write-up's settings (SPEC §2) and builds its recipe, the default.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
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


class _NAdamState(NamedTuple):
  count: jax.Array
  mu_product: jax.Array
  m: optax.Updates
  v: optax.Updates


@dataclasses.dataclass(frozen=True)
class NAdam:
  """torch's NAdam, exactly (horama's MACO optimiser); `optax.nadam` is another rule.

  Step t: mu_t = b1 (1 - 0.5 * 0.96 ** (t * psi)), mu_next likewise at t + 1;
  mu_product *= mu_t (kept in float32, as torch keeps it); m and v as Adam;
  p -= lr (1 - mu_t) / (1 - mu_product) g / d + lr mu_next / (1 - mu_product
  mu_next) m / d, with d = sqrt(v / (1 - b2 ** t)) + eps.
  """

  lr: float
  b1: float = 0.9
  b2: float = 0.999
  eps: float = 1e-8
  momentum_decay: float = 4e-3

  def make(self) -> optax.GradientTransformation:
    def init(params):
      zeros = jax.tree.map(jnp.zeros_like, params)
      return _NAdamState(jnp.zeros((), jnp.int32), jnp.ones((), jnp.float32), zeros, zeros)

    def update(grads, state, params=None):
      count = state.count + 1
      dtype = jax.tree.leaves(grads)[0].dtype
      t = count.astype(dtype)
      mu = self.b1 * (1.0 - 0.5 * 0.96 ** (t * self.momentum_decay))
      mu_next = self.b1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * self.momentum_decay))
      mu_product = state.mu_product * mu.astype(jnp.float32)
      product = mu_product.astype(dtype)
      first = self.lr * (1 - mu) / (1 - product)
      second = self.lr * mu_next / (1 - product * mu_next)
      m = jax.tree.map(lambda m, g: m + (g - m) * (1 - self.b1), state.m, grads)
      v = jax.tree.map(lambda v, g: self.b2 * v + (1 - self.b2) * g * g, state.v, grads)

      def step(g, m, v):
        denom = jnp.sqrt(v / (1 - self.b2 ** t)) + self.eps
        return -(first * g / denom + second * m / denom)

      return jax.tree.map(step, grads, m, v), _NAdamState(count, mu_product, m, v)

    return optax.GradientTransformation(init, update)

  def spec(self) -> dict:
    return {"nadam": dataclasses.asdict(self)}


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
    input_side: the model sees its inputs resized to this side (bilinear,
      aligned corners: lucent's upsampling to 224), or as they are.
    name: how figures and the atlas name the recipe.
  """

  objective: objectives_lib.Objective
  param: params_lib.Parameterisation
  optimizer: Adam | NAdam
  sides: tuple[int, ...]
  steps: tuple[int, ...]
  transforms: transforms_lib.Compose = transforms_lib.Compose()
  group: int = 1
  input_side: int | None = None
  name: str = "custom"

  def total_steps(self) -> int:
    return sum(self.steps)

  def spec(self) -> dict:
    return {"objective": self.objective.spec(), "param": self.param.spec(),
            "optimizer": self.optimizer.spec(), "sides": list(self.sides),
            "steps": list(self.steps), "transforms": self.transforms.spec(),
            "group": self.group, "input_side": self.input_side, "name": self.name}


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

  def recipe(self, objective: objectives_lib.Objective, group: int = 1) -> Recipe:
    """SPEC §2: normalised pixels, no transforms, Adam with L2 decay, these scales."""
    return Recipe(objective=objective, param=params_lib.NormalisedPixels(self.blur),
                  optimizer=Adam(self.lr, self.weight_decay), sides=self.sides(),
                  steps=tuple(self.steps_at(i) for i in range(self.scales)), group=group,
                  name="seed")

  def spec(self) -> dict:
    return dataclasses.asdict(self)

  def preview(self) -> "Schedule":
    """`--preview`: 4 scales of 25 steps (32 in the last) up to 96 px, 107 steps in
    all, about 1/60 of the default's work; the other settings kept."""
    return dataclasses.replace(self, size0=56, scales=4, upscale=1.2, steps=25)

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


def _check_steps_lr(steps: int, lr: float) -> None:
  if steps < 1:
    raise SettingError("steps", f"must be at least 1, got {steps}")
  if not (math.isfinite(lr) and lr > 0):
    raise SettingError("lr", f"must be a positive finite number, got {lr}")


def _check_size(size0: int, min_side: int | None, layer_label: str) -> None:
  if min_side is None:
    return
  if size0 < min_side:
    raise SettingError("size0", f"{size0} is too small for {layer_label}: the minimum is "
                                f"{min_side}")
  if size0 > MAX_SIDE:
    raise SettingError("size0", f"{size0} is above {MAX_SIDE} px")


@dataclasses.dataclass(frozen=True)
class Lucid:
  """lucid's recipe as lucent's `render_vis` runs it: a Fourier image with
  decorrelated colours and a sigmoid (`params.Fourier`), lucid's standard
  transforms, the model's input upsampled to 224 px, Adam (lr 0.05, no decay),
  512 steps at 128 px, one scale."""

  size0: int = 128
  steps: int = 512
  lr: float = 0.05
  decay_power: float = 1.0
  transforms: bool = True
  decorrelate: bool = True
  input_side: int | None = 224

  def sides(self) -> tuple[int, ...]:
    return (self.size0,)

  def total_steps(self) -> int:
    return self.steps

  def spec(self) -> dict:
    return dataclasses.asdict(self)

  def preview(self) -> "Lucid":
    """`--preview`: 64 steps instead of 512."""
    return dataclasses.replace(self, steps=64)

  def recipe(self, objective: objectives_lib.Objective, group: int = 1) -> Recipe:
    transforms = transforms_lib.lucid_standard() if self.transforms else transforms_lib.Compose()
    return Recipe(objective=objective,
                  param=params_lib.Fourier(self.decay_power, 0.01, self.decorrelate),
                  optimizer=Adam(self.lr), sides=(self.size0,), steps=(self.steps,),
                  transforms=transforms, group=group, input_side=self.input_side, name="lucid")

  def check(self, min_side: int | None = 1, layer_label: str = "the layer") -> None:
    _check_steps_lr(self.steps, self.lr)
    if not math.isfinite(self.decay_power):
      raise SettingError("decay_power", f"must be a finite number, got {self.decay_power}")
    # The model sees the input side (224) whatever the image's side.
    _check_size(self.size0, 1 if min_side is not None else None, layer_label)
    if self.input_side is not None and min_side is not None and self.input_side < min_side:
      raise SettingError("input_side", f"{self.input_side} is too small for {layer_label}")


@dataclasses.dataclass(frozen=True)
class MacoRecipe:
  """MACO (Fel et al. 2023) as horama runs it: a fixed magnitude spectrum and an
  optimised phase (`params.Maco`), 6 noisy random crops per step resized to the
  model's 224 px (`transforms.CropsWithNoise`), torch's NAdam (lr 1.0), 1000 steps
  at the spectrum's side (horama's defaults, with its 1280 px spectrum). The
  spectrum is a `Constant` or an array, (3, S, S // 2 + 1) (`jaxviz spectrum`)."""

  spectrum: params_lib.Constant
  size0: int | None = None  # the spectrum's side (horama's default spectrum: 1280)
  steps: int = 1000
  lr: float = 1.0
  crops: int = 6
  noise: float = 0.05
  crop_side: int = 224

  def __post_init__(self):
    # An array (np.load of a `jaxviz spectrum` file) is as good as a Constant.
    object.__setattr__(self, "spectrum", params_lib.as_spectrum(self.spectrum))
    if self.size0 is None:
      object.__setattr__(self, "size0", int(self.spectrum.array.shape[1]))

  def sides(self) -> tuple[int, ...]:
    return (self.size0,)

  def total_steps(self) -> int:
    return self.steps

  def spec(self) -> dict:
    settings = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
    return {**settings, "spectrum": self.spectrum.digest}

  def preview(self) -> "MacoRecipe":
    """`--preview`: 100 steps instead of 1000 (the size is the spectrum's)."""
    return dataclasses.replace(self, steps=100)

  def _crops(self) -> transforms_lib.CropsWithNoise:
    return transforms_lib.CropsWithNoise(self.crops, noise=self.noise, side=self.crop_side)

  def recipe(self, objective: objectives_lib.Objective, group: int = 1) -> Recipe:
    return Recipe(objective=objective, param=params_lib.Maco(self.spectrum),
                  optimizer=NAdam(self.lr), sides=(self.size0,), steps=(self.steps,),
                  transforms=transforms_lib.Compose((self._crops(),)),
                  group=group, name="maco")

  def check(self, min_side: int | None = 1, layer_label: str = "the layer") -> None:
    _check_steps_lr(self.steps, self.lr)
    if self.size0 % 2:
      raise SettingError("size0", f"must be even for MACO, got {self.size0}")
    if self.crops < 2:
      raise SettingError("crops", f"must be at least 2 (horama's step needs two), got "
                                  f"{self.crops}")
    if not (math.isfinite(self.noise) and self.noise >= 0):
      raise SettingError("noise", f"must be a finite number >= 0, got {self.noise}")
    if min_side is None:
      return
    _check_size(self.size0, 1, layer_label)
    if self.crop_side < min_side:
      raise SettingError("crop_side", f"{self.crop_side} is too small for {layer_label}")
    fraction = self._crops().largest_fraction
    if fraction * self.size0 > 2 * self.crop_side:
      raise SettingError("size0", f"{self.size0} is above {int(2 * self.crop_side / fraction)}: "
                                  f"MACO's crops (up to {fraction:.0%}) must fit twice "
                                  f"{self.crop_side} px")
    expected = (3, self.size0, self.size0 // 2 + 1)
    if tuple(self.spectrum.array.shape) != expected:
      raise SettingError("spectrum", f"has shape {tuple(self.spectrum.array.shape)}; a "
                                     f"{self.size0} px MACO image needs {expected} (make one "
                                     f"with `jaxviz spectrum FOLDER --size {self.size0}`)")

"""Objectives: what activation maximisation maximises, and their algebra.

Conventions:
  * An objective is called as `objective(features, images, unit)` and returns
    a scalar to MAXIMISE. `features` is a `models.Features` (the activations of
    the group of images), `images` the group itself (N, H, W, 3) in [0, 1] as
    the parameterisation made it (before transforms), `unit` the traced index
    of the map being rendered (a channel, for channel objectives).
  * `layers()` names the activations it reads; `channel_only()` names the one
    layer if all it reads is channel `unit` of it (the model may then compute
    that channel alone).
  * `spec()` is a JSON-able description: records and identity hashes use it.
  * Objectives compose: `a + b`, `a - b`, `2 * a`, `a / 2`, `-a`, `sum([...])`.
    They are frozen dataclasses, so equal settings are equal objectives.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


class Objective:
  """Base class: subclasses are frozen dataclasses defining `__call__`, `layers`, `spec`."""

  def __call__(self, features, images: jax.Array, unit: jax.Array) -> jax.Array:
    raise NotImplementedError

  def layers(self) -> frozenset[str]:
    return frozenset()

  def channel_only(self) -> str | None:
    return None

  def units(self, shapes: dict[str, tuple[int, ...]]) -> int | None:
    """How many units (maps) it can be asked for, given the shapes (N, h, w, C) of the
    layers it reads; None if `unit` is not an index it uses."""
    return None

  def spec(self) -> dict:
    raise NotImplementedError

  def __add__(self, other) -> "Objective":
    return Sum.of((1.0, self), (1.0, _as_objective(other)))

  def __radd__(self, other) -> "Objective":
    return self if isinstance(other, (int, float)) and other == 0 else self + other

  def __sub__(self, other) -> "Objective":
    return Sum.of((1.0, self), (-1.0, _as_objective(other)))

  def __rsub__(self, other) -> "Objective":
    return _as_objective(other) - self

  def __neg__(self) -> "Objective":
    return Sum.of((-1.0, self))

  def __mul__(self, factor) -> "Objective":
    if not isinstance(factor, (int, float)) or isinstance(factor, bool):
      return NotImplemented
    return Sum.of((float(factor), self))

  __rmul__ = __mul__

  def __truediv__(self, divisor) -> "Objective":
    if not isinstance(divisor, (int, float)) or isinstance(divisor, bool):
      return NotImplemented
    return self * (1.0 / divisor)


def _as_objective(value) -> Objective:
  if isinstance(value, Objective):
    return value
  if isinstance(value, (int, float)) and not isinstance(value, bool):
    return Constant(float(value))
  raise TypeError(f"cannot combine an objective with {type(value).__name__}")


@dataclasses.dataclass(frozen=True)
class Constant(Objective):
  value: float

  def __call__(self, features, images, unit):
    return jnp.asarray(self.value, images.dtype)

  def spec(self) -> dict:
    return {"constant": self.value}


@dataclasses.dataclass(frozen=True)
class Sum(Objective):
  """sum of weight * objective; nested sums are flattened."""

  terms: tuple[tuple[float, Objective], ...]

  @staticmethod
  def of(*terms: tuple[float, Objective]) -> "Sum":
    flat: list[tuple[float, Objective]] = []
    for weight, term in terms:
      if isinstance(term, Sum):
        flat.extend((weight * inner_weight, inner) for inner_weight, inner in term.terms)
      else:
        flat.append((weight, term))
    return Sum(tuple(flat))

  def __call__(self, features, images, unit):
    return sum(weight * term(features, images, unit) for weight, term in self.terms)

  def layers(self) -> frozenset[str]:
    return frozenset().union(*(term.layers() for _, term in self.terms))

  def channel_only(self) -> str | None:
    reads = {term.channel_only() for _, term in self.terms if term.layers()}
    return reads.pop() if len(reads) == 1 and None not in reads else None

  def units(self, shapes):
    counts = [count for _, term in self.terms if (count := term.units(shapes)) is not None]
    return min(counts, default=None)

  def spec(self) -> dict:
    return {"sum": [[weight, term.spec()] for weight, term in self.terms]}


@dataclasses.dataclass(frozen=True)
class Channel(Objective):
  """The write-up's objective: the mean over positions (and the group) of channel `unit`."""

  layer: str

  def __call__(self, features, images, unit):
    return features.channel(self.layer).mean()

  def layers(self) -> frozenset[str]:
    return frozenset({self.layer})

  def channel_only(self) -> str | None:
    return self.layer

  def units(self, shapes):
    return shapes[self.layer][-1]

  def spec(self) -> dict:
    return {"channel": self.layer}


@dataclasses.dataclass(frozen=True)
class Neuron(Objective):
  """Channel `unit` at one position: `(row, column)`, or the centre (h // 2, w // 2)."""

  layer: str
  position: tuple[int, int] | None = None

  def __call__(self, features, images, unit):
    channel = features.channel(self.layer)
    row, column = self.position or (channel.shape[1] // 2, channel.shape[2] // 2)
    return channel[:, row, column].mean()

  def layers(self) -> frozenset[str]:
    return frozenset({self.layer})

  def channel_only(self) -> str | None:
    return self.layer

  def units(self, shapes):
    return shapes[self.layer][-1]

  def spec(self) -> dict:
    return {"neuron": self.layer, "position": list(self.position) if self.position else None}


@dataclasses.dataclass(frozen=True)
class Custom(Objective):
  """A user's function `(features, images, unit) -> scalar` as an objective.

  Attributes:
    function: read activations with `features.layer(name)` (N, h, w, C) or
      `features.channel(name)` (N, h, w, channel `unit`); return the scalar
      to maximise.
    reads: the layer names it reads.
    name: how records name it (default: the function's qualified name).
  """

  function: Callable
  reads: tuple[str, ...]
  name: str = ""

  def __call__(self, features, images, unit):
    return self.function(features, images, unit)

  def layers(self) -> frozenset[str]:
    return frozenset(self.reads)

  def spec(self) -> dict:
    name = self.name or f"{self.function.__module__}.{self.function.__qualname__}"
    return {"custom": name, "reads": list(self.reads)}


@dataclasses.dataclass(frozen=True)
class Direction(Objective):
  """lucent's direction: the mean over the group and positions of the cosine between
  `vector` (one value per channel) and the activation vector there; each norm
  clamped at 1e-8, as torch's `cosine_similarity` clamps them. Ignores `unit`."""

  layer: str
  vector: tuple[float, ...]

  def __call__(self, features, images, unit):
    activations = features.layer(self.layer)
    vector = jnp.asarray(self.vector, activations.dtype)
    norms = jnp.maximum(jnp.linalg.norm(activations, axis=-1), 1e-8)
    cosines = activations @ vector / (norms * jnp.maximum(jnp.linalg.norm(vector), 1e-8))
    return cosines.mean()

  def layers(self) -> frozenset[str]:
    return frozenset({self.layer})

  def spec(self) -> dict:
    return {"direction": self.layer, "vector": list(self.vector)}


@dataclasses.dataclass(frozen=True)
class Diversity(Objective):
  """lucid's diversity across the group of one map: -(1/N) * the sum over ordered pairs
  i != j of <G_i, G_j>, G_i the Gram matrix of image i's activations (channels by
  channels over positions) divided by its Frobenius norm (at least 1e-12).

  Its value is lucent's `diversity(layer)` value (lucent minimises objectives and
  writes `channel - k * diversity`; maximising `Channel + k * Diversity` here is
  the same render). Needs a group of several images (`Recipe.group`).
  """

  layer: str

  def __call__(self, features, images, unit):
    activations = features.layer(self.layer)
    group = activations.shape[0]
    flat = activations.reshape(group, -1, activations.shape[-1])
    grams = jnp.einsum("npc,npd->ncd", flat, flat, precision=jax.lax.Precision.HIGHEST)
    norms = jnp.maximum(jnp.sqrt(jnp.sum(grams * grams, axis=(1, 2))), 1e-12)
    grams = grams / norms[:, None, None]
    similarity = jnp.einsum("icd,jcd->ij", grams, grams, precision=jax.lax.Precision.HIGHEST)
    return -(similarity.sum() - jnp.trace(similarity)) / group

  def layers(self) -> frozenset[str]:
    return frozenset({self.layer})

  def spec(self) -> dict:
    return {"diversity": self.layer}


@dataclasses.dataclass(frozen=True)
class L1(Objective):
  """lucid's L1 of the images: sum |x - constant|. A penalty: subtract it."""

  constant: float = 0.0

  def __call__(self, features, images, unit):
    return jnp.abs(images - self.constant).sum()

  def spec(self) -> dict:
    return {"l1": self.constant}


@dataclasses.dataclass(frozen=True)
class L2(Objective):
  """lucid's L2 of the images: sqrt(epsilon + sum (x - constant)^2). A penalty."""

  constant: float = 0.0
  epsilon: float = 1e-6

  def __call__(self, features, images, unit):
    return jnp.sqrt(self.epsilon + jnp.sum((images - self.constant) ** 2))

  def spec(self) -> dict:
    return {"l2": dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class TotalVariation(Objective):
  """lucid's total variation of the images (`tf.image.total_variation`): the sum of
  absolute differences between vertical and horizontal neighbours. A penalty."""

  def __call__(self, features, images, unit):
    return (jnp.abs(jnp.diff(images, axis=1)).sum() + jnp.abs(jnp.diff(images, axis=2)).sum())

  def spec(self) -> dict:
    return {"total_variation": True}

"""Transforms: key-first random image transforms applied before the model each step.

Conventions:
  * A transform is called as `transform(key, images)` on the group of one map,
    (N, H, W, 3) RGB, and returns images (sizes may change). One draw serves
    the whole group, as in lucid and lucent.
  * A random transform is two pure parts: `draw(key)` -> its random choices
    (a pytree of scalars) and `apply(choices, images)`, so a test can hand it
    the same choices another implementation drew.
  * The key of step s of map k is `fold_in(steps_key_k, s)` (`render`); a
    composition splits it, one key per transform.
  * `spec()` is JSON-able, for records and identity hashes.
"""

from __future__ import annotations

import dataclasses

import jax


class Transform:
  """Base class: subclasses are frozen dataclasses defining `draw`, `apply` and `spec`."""

  def draw(self, key: jax.Array):
    return None

  def apply(self, choices, images: jax.Array) -> jax.Array:
    raise NotImplementedError

  def __call__(self, key: jax.Array, images: jax.Array) -> jax.Array:
    return self.apply(self.draw(key), images)

  def spec(self) -> dict:
    raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Compose(Transform):
  """The transforms in order; empty is the identity (the write-up uses none)."""

  transforms: tuple[Transform, ...] = ()

  def draw(self, key):
    if not self.transforms:
      return ()
    keys = jax.random.split(key, len(self.transforms))
    return tuple(t.draw(k) for t, k in zip(self.transforms, keys))

  def apply(self, choices, images):
    for transform, choice in zip(self.transforms, choices):
      images = transform.apply(choice, images)
    return images

  def __bool__(self) -> bool:
    return bool(self.transforms)

  def spec(self) -> dict:
    return {"compose": [t.spec() for t in self.transforms]}

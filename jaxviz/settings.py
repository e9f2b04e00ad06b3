"""Checks of user settings that several commands share, in domain words.

Each check raises one `JaxvizError` whose message names the setting as the
library calls it; the CLI's options carry the same names as flags.
"""

from __future__ import annotations

import jax

from jaxviz.errors import JaxvizError

# JAX makes a PRNG key from the low 32 bits of a seed unless 64-bit mode is on,
# so two seeds that differ above bit 32 would silently render the same images.
MAX_SEED = 2**32 - 1


def check_seed(seed: int, name: str = "seed") -> int:
  """A PRNG seed: an integer in 0..2**32 - 1."""
  if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
    raise JaxvizError(f"{name} must be an integer from 0 to {MAX_SEED}, got {seed!r}")
  return seed


def prng_key(seed: int, name: str = "seed") -> jax.Array:
  """The PRNG key of a checked seed: where every user seed becomes a key."""
  return jax.random.key(check_seed(seed, name))

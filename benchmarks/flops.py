"""Useful FLOP: XLA's own count of what one map's step computes (no torch needed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxviz.optvis import render
from jaxviz.optvis.recipes import Recipe


def step_flops(params, recipe: Recipe, model, side: int) -> float:
  """XLA's FLOP count for one map's forward + input gradient at `side`."""
  grad = jax.jit(jax.grad(render.objective_value, argnums=3), static_argnums=(0, 1))
  var = jnp.zeros((recipe.group, side, side, 3), jnp.float32)
  analysis = grad.lower(recipe, model, params, var, 0).compile().cost_analysis()
  if isinstance(analysis, list):
    analysis = analysis[0]
  return float(analysis["flops"])

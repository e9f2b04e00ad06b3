"""How long one lucid step program takes to trace and compile (layer 10, lucid's sizes).

Each measurement in a fresh process (nothing cached in memory), no persistent
cache; batch 1 (CPU's usual) and a vmapped batch of 4.

  python benchmarks/bench_lucid_compile.py
"""

from __future__ import annotations

import subprocess
import sys

ONE = """
import sys, time, jax, jax.numpy as jnp
from jaxviz import app, weights
from jaxviz.optvis import recipes, render
from jaxviz.vgg import resolve_target
target = resolve_target(10)
recipe = app.layer_recipe(target, recipes.Lucid(steps=3))
params = render.cast_params(weights.random_weights(0).subset(
    target.model.modules(recipe.objective.layers())), "float32")
static = dict(recipe=recipe, model=target.model, mesh=None)
units = jnp.arange(int(sys.argv[1]), dtype=jnp.int32)
variables = render.batched_start(**static, key=jax.random.key(0), units=units,
                                 dtype=jnp.dtype("float32"))
states = render.batched_optimizer_init(**static, variables=variables)
began = time.perf_counter()
lowered = render.batched_steps.lower(**static, params=params, key=jax.random.key(0),
                                     first_step=jnp.int32(0), variables=variables,
                                     opt_states=states, units=units, num_steps=1)
traced = time.perf_counter()
lowered.compile()
print(f"batch {sys.argv[1]}: trace and lower {traced - began:.2f} s, compile "
      f"{time.perf_counter() - traced:.2f} s")
"""

for batch in (1, 4):
  print(subprocess.run([sys.executable, "-c", ONE, str(batch)], capture_output=True, text=True,
                       check=True).stdout.strip())

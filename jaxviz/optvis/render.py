"""The render loop: written for ONE map, vmapped over a batch of maps.

Conventions:
  * One map ("unit": the channel, for channel objectives) owns one variable
    (a group of `recipe.group` images), one optimiser state and its keys:
    `fold_in(key, unit)` split into an init key and a steps key, and step s
    (counted over all scales) transforms with `fold_in(steps_key, s)`. So a
    map's image never depends on which other maps share its batch.
  * Scale by scale: a fresh optimiser state, `recipe.steps[i]` steps that
    maximise the objective, then the scale's image and objective are recorded
    and, unless it is the last scale, the variable moves to the next side.
  * The final images are clipped to [0, 1]; nothing before is.
  * `dtype="float64"` (CPU) is the verification mode in which the write-up's
    recipe equals a PyTorch loop to ~1e-15; in float32 a render is
    reproducible only within one framework on one device (Adam divides each
    pixel's gradient by its own running magnitude, so rounding noise in tiny
    gradients becomes full-size steps).
  * `driver` "loop" calls a jitted step from Python; "scan" runs each scale's
    steps in one compiled `lax.scan`. On a 2-core CPU the loop costs 8.8 ms
    per step (layer 10, 56 px) against 20.7 for scan, so "auto" is the loop on
    CPU and scan on GPU/TPU, where per-call dispatch dominates small steps.

Everything here is pure; where the work runs (devices, batch sizes, worker
processes) is `jaxviz.execution`'s business.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxviz.errors import SettingError
from jaxviz.optvis import models
from jaxviz.optvis import transforms as transforms_lib
from jaxviz.optvis.recipes import Recipe

DTYPES = ("float32", "float64")
DRIVERS = ("auto", "loop", "scan")


def check_dtype(dtype: str) -> str:
  if dtype not in DTYPES:
    raise SettingError("dtype", f"must be one of {', '.join(DTYPES)}, got {dtype!r}")
  return dtype


def dtype_context(dtype: str):
  """float64 needs JAX's x64 mode; it is switched on only around the work."""
  return jax.enable_x64(True) if check_dtype(dtype) == "float64" else contextlib.nullcontext()


def check_driver(driver: str) -> str:
  """A driver name (without asking for a backend, which would start it)."""
  if driver not in DRIVERS:
    raise SettingError("driver", f"must be one of {', '.join(DRIVERS)}, got {driver!r}")
  return driver


def resolve_driver(driver: str) -> str:
  if check_driver(driver) == "auto":
    return "loop" if jax.default_backend() == "cpu" else "scan"
  return driver


def cast_params(params, dtype: str):
  """The parameters as arrays of `dtype` on the default device (inside `dtype_context`)."""
  return jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.dtype(dtype)), params)


# One map: pure functions of (recipe, model, params, variable, ..., unit, key).

def map_keys(key: jax.Array, unit: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(init key, steps key) of map `unit`."""
  init_key, steps_key = jax.random.split(jax.random.fold_in(key, unit))
  return init_key, steps_key


def start(recipe: Recipe, model, key, unit, dtype, photo=None):
  """Map `unit`'s start variable: drawn from its init key (the same sample in float32
  and float64), or from `photo` (H, W, 3)."""
  if photo is not None:
    return recipe.param.from_photo(photo, recipe.sides[0], recipe.group, model)
  return recipe.param.init(map_keys(key, unit)[0], recipe.sides[0], recipe.group, dtype, model)


def model_input(recipe: Recipe, model, var, step_key: jax.Array | None) -> jax.Array:
  """The model's input for a variable (N images in, M model inputs out; M = N unless a
  transform makes several views of each image).

  The parameterisation's images, then the random transforms when a step key is
  given (in the parameterisation's space, on a canvas: `transforms`), then the
  model's input made of them (`Parameterisation.model_input`), then the resize to
  `recipe.input_side` if it has one. One program serves every draw.
  """
  images = recipe.param.images(var, model)
  sides, which = (images.shape[1],), jnp.int32(0)
  if step_key is not None and recipe.transforms:
    images, which = recipe.transforms.apply(recipe.transforms.draw(step_key), images, which,
                                            sides)
    sides = recipe.transforms.out_sides(sides)
  images = recipe.param.model_input(images, model)
  if recipe.input_side is not None:
    return transforms_lib.resize(images, which, sides, recipe.input_side)
  if len(sides) > 1:
    raise ValueError("the transforms change the image's side by a random draw, so the "
                     "recipe needs an input_side to bring the model one size")
  return images


def objective_value(recipe: Recipe, model, params, var, unit, step_key=None) -> jax.Array:
  """The scalar the recipe maximises, for one map's variable."""
  features = models.Features(model, params, model_input(recipe, model, var, step_key),
                             recipe.objective, unit)
  return recipe.objective(features, recipe.param.to_image(var, model), unit)


def step_key(key: jax.Array, unit, step) -> jax.Array:
  """The key of global step `step` (counted over all scales) of map `unit`: its
  transforms are `recipe.transforms.draw(step_key(key, unit, step))`."""
  return jax.random.fold_in(map_keys(key, unit)[1], step)


def step_draws(recipe: Recipe, key: jax.Array, unit: int) -> Any:
  """Every step's transform choices for map `unit`, stacked over the render's steps (a
  pytree whose leaves lead with `recipe.total_steps()`): with `start`, what a render
  uses, to hand to another implementation so that it renders the same sample."""
  steps = jnp.arange(recipe.total_steps(), dtype=jnp.int32)
  return jax.vmap(lambda step: recipe.transforms.draw(step_key(key, unit, step)))(steps)


def ascent_step(recipe: Recipe, model, params, var, opt_state, unit, key, step):
  """One optimiser step that raises the objective; returns (variable, state, the
  objective on this step's input, before the step)."""
  value, grad = jax.value_and_grad(objective_value, argnums=3)(
      recipe, model, params, var, unit, step_key(key, unit, step))
  updates, opt_state = recipe.optimizer.make().update(jax.tree.map(jnp.negative, grad),
                                                      opt_state, var)
  return jax.tree.map(jnp.add, var, updates), opt_state, value


def is_dead(recipe: Recipe, model, params, var, unit) -> jax.Array:
  """True when the objective is exactly 0 with a zero gradient: a post-ReLU channel
  below zero everywhere. Only the optimiser's own terms (weight decay) move such a
  map, and Adam scales even those up to full-size steps (SPEC §2)."""
  value, grad = jax.value_and_grad(objective_value, argnums=3)(recipe, model, params, var,
                                                                unit)
  return (value == 0) & jnp.all(jnp.stack([jnp.all(g == 0) for g in jax.tree.leaves(grad)]))


# Batches: vmap over (variable, state, unit); parameters, key and step shared.
# With a mesh, `_over_maps` runs the same vmapped program on each device's slice
# of the map axis (shard_map): maps are independent, so no program may hold a
# collective. Left to sharding propagation, XLA inserted all-gathers, which
# also deadlocked a 4-device CPU sweep with more than one map per device.

_STATIC = ("recipe", "model", "mesh")


def _over_maps(function, mesh, replicated: int):
  """`function(*shared, *per_map)` as is on one device, or per device on a mesh,
  with the first `replicated` arguments whole on every device and the rest (and
  every output) split along the "maps" axis."""
  if mesh is None:
    return function
  maps, whole = PartitionSpec("maps"), PartitionSpec()

  def sharded(*args):
    specs = (whole,) * replicated + (maps,) * (len(args) - replicated)
    return jax.shard_map(function, mesh=mesh, in_specs=specs, out_specs=maps)(*args)
  return sharded


@functools.partial(jax.jit, static_argnames=(*_STATIC, "dtype"))
def batched_start(recipe, model, mesh, key, units, dtype):
  one = lambda key, units: jax.vmap(lambda unit: start(recipe, model, key, unit, dtype))(units)
  return _over_maps(one, mesh, 1)(key, units)


@functools.partial(jax.jit, static_argnames=_STATIC)
def batched_start_from_photo(recipe, model, mesh, photo, units):
  one = lambda photo, units: jax.vmap(
      lambda unit: start(recipe, model, None, unit, photo.dtype, photo))(units)
  return _over_maps(one, mesh, 1)(photo, units)


@functools.partial(jax.jit, static_argnames=_STATIC)
def batched_optimizer_init(recipe, model, mesh, variables):
  return _over_maps(jax.vmap(recipe.optimizer.make().init), mesh, 0)(variables)


@functools.partial(jax.jit, static_argnames=_STATIC)
def batched_dead(recipe, model, mesh, params, variables, units):
  one = lambda params, variables, units: jax.vmap(
      functools.partial(is_dead, recipe, model, params))(variables, units)
  return _over_maps(one, mesh, 1)(params, variables, units)


def _steps(recipe, model, params, key, steps, variables, opt_states, units):
  """`len(steps)` ascent steps of every map of the batch (one device's share); returns
  (variables, states, objectives (len(steps), B))."""
  def one_step(carry, step):
    def one(var, opt_state, unit):
      return ascent_step(recipe, model, params, var, opt_state, unit, key, step)
    variables, opt_states, values = jax.vmap(one)(*carry, units)
    return (variables, opt_states), values

  if steps.shape[0] == 1:
    carry, values = one_step((variables, opt_states), steps[0])
    return (*carry, values[None])
  carry, values = jax.lax.scan(one_step, (variables, opt_states), steps)
  return (*carry, values)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "num_steps"))
def batched_steps(recipe, model, mesh, params, key, first_step, variables, opt_states, units,
                  num_steps=1):
  """`num_steps` steps from global step `first_step`: one step (the "loop" driver
  calls this from Python) or a whole scale in one `lax.scan` (the "scan" driver)."""
  def run(params, key, first_step, variables, opt_states, units):
    steps = first_step + jnp.arange(num_steps, dtype=jnp.int32)
    variables, opt_states, values = _steps(recipe, model, params, key, steps, variables,
                                           opt_states, units)
    return variables, opt_states, values.T  # maps first, for the mesh's split
  return _over_maps(run, mesh, 3)(params, key, first_step, variables, opt_states, units)


@functools.partial(jax.jit, static_argnames=_STATIC)
def batched_end_scale(recipe, model, mesh, params, variables, units):
  """Each map's images and its objective on them (no random transforms)."""
  def one(params, variables, units):
    images = jax.vmap(lambda var: recipe.param.to_image(var, model))(variables)
    value = jax.vmap(lambda var, unit: objective_value(recipe, model, params, var, unit))
    return images, value(variables, units)
  return _over_maps(one, mesh, 1)(params, variables, units)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "side"))
def batched_next_scale(recipe, model, mesh, variables, side):
  one = jax.vmap(lambda var: recipe.param.next_scale(var, side, model))
  return _over_maps(one, mesh, 0)(variables)


@dataclasses.dataclass(frozen=True)
class BatchResult:
  """One finished batch.

  Attributes:
    maps: (B,) units.
    images: (B, group, S, S, 3) final images in [0, 1].
    objectives: (B, scales) each map's objective at the end of each scale.
    dead_at_start: (B,) bool (`is_dead` on the start variable).
    trace: (B, total steps) the objective each step maximised, on its own
      transformed input, before its update.
  """

  maps: np.ndarray
  images: np.ndarray
  objectives: np.ndarray
  dead_at_start: np.ndarray
  trace: np.ndarray

  def failure(self, row: int) -> str | None:
    """Why map `row` failed, or None: its objective or image stopped being finite
    (weights whose activations overflow, say), so its image is not a render."""
    bad_scales = np.flatnonzero(~np.isfinite(self.objectives[row]))
    if bad_scales.size:
      scale = int(bad_scales[0])
      return f"its objective became {self.objectives[row, scale]} at scale {scale}"
    if not np.isfinite(self.images[row]).all():
      return "its image became non-finite"
    return None

  def first(self, count: int) -> "BatchResult":
    """The first `count` maps: drops a padded batch's padding."""
    return BatchResult(self.maps[:count], self.images[:count], self.objectives[:count],
                       self.dead_at_start[:count], self.trace[:count])


def _report_when_done(on_steps, queued: tuple[jax.Array, int], scale: int) -> None:
  """Waits for a chunk's values (its steps' objectives), then tells `on_steps` its steps."""
  values, steps = queued
  values.block_until_ready()
  on_steps(steps, scale)


def render_batch(recipe: Recipe, model, params: Any, units, key: jax.Array, *,
                 photo: np.ndarray | None = None, dtype: str = "float32",
                 driver: str = "auto", mesh: Mesh | None = None,
                 on_steps: Callable[[int, int], None] | None = None) -> BatchResult:
  """Renders one batch of maps with `recipe`; see the module docstring.

  Args:
    params: the model's parameters, already pruned and cast to `dtype` (and
      replicated over `mesh`) by the caller.
    units: (B,) int map indices; with a mesh, B is a multiple of its size.
    key: the run's PRNG key.
    photo: an (H, W, 3) start photo in [0, 1] for every map instead of the
      parameterisation's random init (its dtype should be `dtype`).
    mesh: a 1-D mesh with axis "maps": each device renders its share of the
      batch, with no communication (`_over_maps`).
    on_steps: called with (steps just completed, their scale), once they are done on
      the device, not once they are queued: JAX runs up to about 15 steps ahead of
      their results (measured at lucid's start on CPU), and counting queued steps
      as done made the time estimates 1.5 to 3 times too short.
  """
  driver = resolve_driver(driver)
  static = {"recipe": recipe, "model": model, "mesh": mesh}
  with dtype_context(dtype):
    units = jnp.asarray(units, jnp.int32)
    if mesh is not None:
      units = jax.device_put(units, NamedSharding(mesh, PartitionSpec("maps")))
    if photo is None:
      variables = batched_start(**static, key=key, units=units, dtype=jnp.dtype(dtype))
    else:
      variables = batched_start_from_photo(**static, photo=jnp.asarray(photo, dtype),
                                           units=units)
    dead = batched_dead(**static, params=params, variables=variables, units=units)
    step = 0
    objectives, trace = [], []
    for scale, num_steps in enumerate(recipe.steps):
      opt_states = batched_optimizer_init(**static, variables=variables)
      chunks = [num_steps] if driver == "scan" else [1] * num_steps
      queued = None  # the previous chunk (its values, its steps): reported once done
      for chunk in chunks:
        variables, opt_states, values = batched_steps(
            **static, params=params, key=key, first_step=jnp.int32(step), variables=variables,
            opt_states=opt_states, units=units, num_steps=chunk)
        trace.append(values)
        step += chunk
        if on_steps and queued is not None:
          # One chunk stays queued behind the one waited for, so the device never idles.
          _report_when_done(on_steps, queued, scale)
        queued = values, chunk
      if on_steps and queued is not None:
        _report_when_done(on_steps, queued, scale)
      images, objective = batched_end_scale(**static, params=params, variables=variables,
                                            units=units)
      objectives.append(np.asarray(objective))
      if scale + 1 < len(recipe.steps):
        variables = batched_next_scale(**static, variables=variables,
                                       side=recipe.sides[scale + 1])
    return BatchResult(np.asarray(units), np.asarray(jnp.clip(images, 0.0, 1.0)),
                       np.stack(objectives, 1), np.asarray(dead),
                       np.concatenate([np.asarray(values) for values in trace], axis=1))

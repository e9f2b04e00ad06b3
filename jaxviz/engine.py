"""Activation maximisation, the write-up's multi-scale algorithm (SPEC §2), exact.

Conventions:
  * The pure functions below work on ONE map: one (H, W, 3) image, one Adam
    state, one map index. The batched versions are `jax.vmap` of them over
    (image, state, map index) with the parameters shared, so a map's image
    never depends on which other maps share its batch.
  * The optimised variable is the *normalised* image; each scale's result is
    de-normalised without clipping, and only the final image is clipped.
  * Randomness is key-first: map k's start noise comes from
    `jax.random.fold_in(key, k)`.
  * `dtype="float64"` (CPU) is the verification mode in which this loop equals
    a PyTorch one to ~1e-5/255; float32 is for speed, and a float32 render
    is reproducible only within one framework on one device (Adam divides by
    each pixel's own gradient magnitude, so rounding noise in tiny gradients
    becomes full-size steps).

How steps are driven ("driver") was measured on a 2-core CPU (layer 10,
56 px, one map): a jitted step called from a Python loop costs 8.8 ms per step
while the same step inside `lax.scan` costs 20.7 ms, so "loop" is the CPU
default; on GPU and TPU per-call dispatch dominates small steps, so "scan"
(one compiled program per scale) is the default there. BENCHMARKS.md has the
figures.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import math
import os
from typing import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxviz import layers as layers_lib
from jaxviz import cpu_workers, ops, vgg
from jaxviz.errors import JaxvizError
from jaxviz.objectives import Target, channel_mean

DTYPES = ("float32", "float64")
DRIVERS = ("auto", "loop", "scan")
# Beyond these a render is a mistake rather than a choice: one 4096 px map of
# conv5_1 keeps ~10 GB of activations alive, and sides are computed per scale.
MAX_SIDE = 4096
MAX_SCALES = 64


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

  def check(self, target: Target) -> None:
    """Raises JaxvizError for settings the loop cannot run (non-finite numbers included)."""
    for name, value in (("lr", self.lr), ("weight-decay", self.weight_decay),
                        ("upscale", self.upscale)):
      if not math.isfinite(value):
        raise JaxvizError(f"--{name} must be a finite number, got {value}")
    minimum = target.layer.min_input_side
    if self.size0 < minimum:
      raise JaxvizError(f"--size0 {self.size0} is too small for layer {target.layer.index} "
                        f"({target.layer.name}): the minimum is {minimum}")
    if not 1 <= self.scales <= MAX_SCALES or self.steps < 1:
      raise JaxvizError(f"--scales must be in 1..{MAX_SCALES} and --steps at least 1")
    if not self.lr > 0:
      raise JaxvizError(f"--lr must be positive, got {self.lr}")
    if not self.weight_decay >= 0:
      raise JaxvizError(f"--weight-decay must be 0 or more, got {self.weight_decay}")
    if self.blur < 1 or self.blur % 2 == 0:
      raise JaxvizError(f"--blur must be a positive odd number (1 = none), got {self.blur}")
    if not self.upscale >= 1:
      raise JaxvizError(f"--upscale must be at least 1, got {self.upscale}")
    if self._largest_side() > MAX_SIDE:
      raise JaxvizError(f"--size0, --upscale and --scales give sides above {MAX_SIDE} px")
    if self.scales > 1 and self.size0 <= self.blur // 2:
      raise JaxvizError(f"a {self.blur}x{self.blur} blur needs sides above {self.blur // 2}")


def optimiser(schedule: Schedule) -> optax.GradientTransformation:
  """Adam with L2 weight decay added to the gradient first: torch's Adam(weight_decay=...)."""
  return optax.chain(optax.add_decayed_weights(schedule.weight_decay),
                     optax.adam(schedule.lr, b1=0.9, b2=0.999, eps=1e-8))


def start_image(key: jax.Array, map_index: jax.Array, side: int,
                dtype: jnp.dtype = jnp.float32) -> jax.Array:
  """Near-grey noise, (u * 20 + 128) / 255 with u ~ U[0, 1): (side, side, 3) in [0, 1]."""
  noise = jax.random.uniform(jax.random.fold_in(key, map_index), (side, side, 3), dtype)
  return (noise * 20 + 128) / 255


def ascent_step(params: vgg.Params, image: jax.Array, opt_state: optax.OptState,
                map_index: jax.Array, schedule: Schedule, target: Target):
  """One Adam step on one normalised (H, W, 3) image; returns (image, opt_state)."""
  grad = jax.grad(channel_mean, argnums=1)(params, image, map_index, target)
  updates, opt_state = optimiser(schedule).update(-grad, opt_state, image)
  return optax.apply_updates(image, updates), opt_state


def next_scale(image: jax.Array, side: int, blur: int) -> jax.Array:
  """De-normalised (H, W, 3) -> (side, side, 3): OpenCV bicubic, then box blur."""
  return ops.box_blur(ops.resize_bicubic(image, side, side), blur)


# Batched, jitted versions: vmap over (image, state, map index), params shared.
_MAPPED = (None, 0, 0, 0)


@functools.partial(jax.jit, static_argnames=("schedule", "target"))
def _batched_step(params, images, opt_states, maps, schedule, target):
  step = functools.partial(ascent_step, schedule=schedule, target=target)
  return jax.vmap(step, in_axes=_MAPPED)(params, images, opt_states, maps)


@functools.partial(jax.jit, static_argnames=("schedule", "target", "num_steps"))
def _batched_scan(params, images, opt_states, maps, schedule, target, num_steps):
  step = jax.vmap(functools.partial(ascent_step, schedule=schedule, target=target),
                  in_axes=_MAPPED)

  def body(carry, _):
    return step(params, *carry, maps), None

  (images, opt_states), _ = jax.lax.scan(body, (images, opt_states), None, length=num_steps)
  return images, opt_states


@functools.partial(jax.jit, static_argnames=("schedule",))
def _batched_begin_scale(images, schedule):
  normalised = jax.vmap(ops.normalise)(images)
  return normalised, jax.vmap(optimiser(schedule).init)(normalised)


@functools.partial(jax.jit, static_argnames=("target",))
def _batched_dead(params, normalised, maps, target):
  """(B,) bool: the map's objective is exactly 0 with a zero gradient on its image.

  Such a map (a post-ReLU channel below zero everywhere) is moved by the weight
  decay alone, which Adam scales up to full-size steps (SPEC §2).
  """
  value_and_grad = jax.vmap(jax.value_and_grad(channel_mean, argnums=1),
                            in_axes=(None, 0, 0, None))
  values, grads = value_and_grad(params, normalised, maps, target)
  return (values == 0) & jnp.all(grads == 0, axis=(1, 2, 3))


@functools.partial(jax.jit, static_argnames=("target",))
def _batched_end_scale(params, normalised, maps, target):
  """De-normalised images and each map's objective on its own image."""
  objective = jax.vmap(functools.partial(channel_mean, target=target), in_axes=(None, 0, 0))
  return jax.vmap(ops.denormalise)(normalised), objective(params, normalised, maps)


@functools.partial(jax.jit, static_argnames=("side", "blur"))
def _batched_next_scale(images, side, blur):
  return jax.vmap(functools.partial(next_scale, side=side, blur=blur))(images)


@functools.partial(jax.jit, static_argnames=("side", "dtype"))
def _batched_start(key, maps, side, dtype):
  return jax.vmap(functools.partial(start_image, side=side, dtype=dtype),
                  in_axes=(None, 0))(key, maps)


def use_compilation_cache(directory: os.PathLike | str) -> None:
  """Keeps compiled programs in `directory`, so later processes (a second run,
  the CPU worker processes) load them instead of compiling.

  Every program is kept, however quick to compile: each worker process
  starts cold, and the small per-scale programs add up to 0.4 s per start.
  """
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def resolve_driver(driver: str) -> str:
  if driver not in DRIVERS:
    raise JaxvizError(f"--driver must be one of {', '.join(DRIVERS)}, got {driver!r}")
  if driver == "auto":
    return "loop" if jax.default_backend() == "cpu" else "scan"
  return driver


def dtype_context(dtype: str):
  """float64 needs JAX's x64 mode; it is switched on only around the work."""
  if dtype not in DTYPES:
    raise JaxvizError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
  return jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()


@dataclasses.dataclass(frozen=True)
class BatchResult:
  """One finished batch: maps (B,), images (B, S, S, 3) in [0, 1], objectives (B, scales),
  dead_at_start (B,) bool (`_batched_dead` on the start image)."""

  maps: np.ndarray
  images: np.ndarray
  objectives: np.ndarray
  dead_at_start: np.ndarray

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
    """The first `count` maps: drops the padding `iter_batches` added."""
    return BatchResult(self.maps[:count], self.images[:count], self.objectives[:count],
                       self.dead_at_start[:count])


def map_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
  """A 1-D mesh over the local devices with axis "maps"; None for a single device."""
  devices = list(devices if devices is not None else jax.local_devices())
  return Mesh(np.array(devices), ("maps",)) if len(devices) > 1 else None


def render_batch(params: vgg.Params, maps: np.ndarray, key: jax.Array, schedule: Schedule,
                 target: Target, *, start: np.ndarray | None = None, dtype: str = "float32",
                 driver: str = "auto", mesh: Mesh | None = None,
                 on_steps: Callable[[int], None] | None = None) -> BatchResult:
  """Renders one batch of maps of `target.layer`, all with the same schedule.

  Args:
    params: network parameters (only the layers up to the target are used).
    maps: (B,) int feature-map indices.
    key: PRNG key; map k starts from `fold_in(key, k)` noise.
    start: optional (size0, size0, 3) start image in [0, 1] for every map,
      instead of noise.
    mesh: shard the batch's map axis over this mesh's "maps" axis, with the
      parameters replicated; len(maps) must be a multiple of its size. The
      jitted functions are the same: XLA propagates the input shardings.
    on_steps: called with the number of optimisation steps just completed.
  """
  driver = resolve_driver(driver)
  sides = schedule.sides()
  with dtype_context(dtype):
    jdtype = jnp.dtype(dtype)
    params = jax.tree.map(lambda p: jnp.asarray(p, jdtype),
                          vgg.truncate_params(params, target.read, target.arch))
    maps_array = jnp.asarray(maps, jnp.int32)
    if mesh is not None:
      params = jax.device_put(params, NamedSharding(mesh, PartitionSpec()))
      maps_array = jax.device_put(maps_array, NamedSharding(mesh, PartitionSpec("maps")))
    if start is None:
      images = _batched_start(key, maps_array, sides[0], jdtype)
    else:
      images = jnp.broadcast_to(jnp.asarray(start, jdtype), (len(maps), sides[0], sides[0], 3))
    if mesh is not None:
      images = jax.device_put(images, NamedSharding(mesh, PartitionSpec("maps")))
    objectives = []
    for scale, side in enumerate(sides):
      normalised, opt_states = _batched_begin_scale(images, schedule)
      if scale == 0:
        dead = _batched_dead(params, normalised, maps_array, target)
      num_steps = schedule.steps_at(scale)
      if driver == "scan":
        normalised, opt_states = _batched_scan(params, normalised, opt_states, maps_array,
                                               schedule, target, num_steps)
        if on_steps:
          on_steps(num_steps)
      else:
        for _ in range(num_steps):
          normalised, opt_states = _batched_step(params, normalised, opt_states, maps_array,
                                                 schedule, target)
          if on_steps:
            on_steps(1)
      images, objective = _batched_end_scale(params, normalised, maps_array, target)
      objectives.append(objective)
      if scale + 1 < len(sides):
        images = _batched_next_scale(images, sides[scale + 1], schedule.blur)
    final = np.asarray(jnp.clip(images, 0.0, 1.0))
    return BatchResult(np.asarray(maps), final, np.stack([np.asarray(o) for o in objectives], 1),
                       np.asarray(dead))


def iter_batches(maps: Sequence[int], batch: int) -> Iterator[tuple[np.ndarray, int]]:
  """Splits `maps` into batches of exactly `batch` indices, padding the last.

  Yields (indices, real count). Padding repeats the last index, so the compiled
  programs keep one shape; padded results are discarded.
  """
  if batch < 1:
    raise JaxvizError(f"--batch must be at least 1, got {batch}")
  maps = list(maps)
  for begin in range(0, len(maps), batch):
    chunk = maps[begin:begin + batch]
    count = len(chunk)
    chunk = chunk + [chunk[-1]] * (batch - count)
    yield np.asarray(chunk, np.int64), count


def is_out_of_memory(error: Exception) -> bool:
  text = str(error)
  return "RESOURCE_EXHAUSTED" in text or "Out of memory" in text or "out of memory" in text


def effective_batch(batch: int, num_maps: int, mesh: Mesh | None, workers: int = 1) -> int:
  """The batch actually run: no bigger than the work or than one worker's share of it,
  and a multiple of the mesh size so every device gets maps."""
  batch = max(1, min(batch, num_maps, -(-num_maps // workers)))
  if mesh is not None:
    batch = -(-batch // mesh.size) * mesh.size
  return batch


def auto_workers() -> int:
  """Batches rendered side by side: one worker process per usable core on CPU, else one.

  XLA CPU runs these small convolutions on about one core whatever the batch
  (measured on 2 cores: disabling Eigen's threading changes nothing), so
  independent batches on each core nearly double throughput: at 56 px, 8.9 ms
  per map-step with one, 5.9 with two threads, 4.7 with two pinned processes
  (`jaxviz.cpu_workers` says why processes). GPUs and TPUs are fed by one.
  """
  if jax.default_backend() != "cpu":
    return 1
  return len(cpu_workers.usable_cores())


def local_execution() -> tuple[Mesh | None, int]:
  """How to use this host: (mesh over its devices if several, worker count).

  Several devices: the map axis is sharded over all of them from one thread.
  One device: one worker process per core on CPU (`auto_workers`), else one.
  """
  mesh = map_mesh()
  return mesh, 1 if mesh is not None else auto_workers()


def iter_render(params: vgg.Params, maps: Sequence[int], key: jax.Array, schedule: Schedule,
                target: Target, *, batch: int = 8, mesh: Mesh | None = None, workers: int = 1,
                on_out_of_memory: Callable[[int], None] | None = None,
                **kwargs) -> Iterator[BatchResult]:
  """`render_batch` over all `maps` in padded batches; yields each finished batch.

  With `workers` > 1 (CPU), that many processes, each pinned to its own core
  (`jaxviz.cpu_workers`), render batches side by side; batches are still
  yielded in order, in the caller's thread. With one worker, an
  out-of-memory error halves the batch size and the unfinished maps are
  retried (`on_out_of_memory(new_batch)` is told); at batch 1 (or one map per
  device) the error propagates.
  """
  schedule.check(target)
  pending = list(maps)
  batch = effective_batch(batch, len(pending), mesh, workers)
  workers = min(workers, -(-len(pending) // batch))
  if workers > 1:
    if mesh is not None:
      raise ValueError("worker processes and a device mesh are alternatives")
    yield from _iter_render_processes(params, pending, key, schedule, target, batch, workers,
                                      **kwargs)
    return
  while pending:
    indices, count = next(iter_batches(pending, batch))
    try:
      result = render_batch(params, indices, key, schedule, target, mesh=mesh, **kwargs)
    except Exception as error:  # XLA raises a generic runtime error for OOM
      smallest = mesh.size if mesh is not None else 1
      if not is_out_of_memory(error) or batch <= smallest:
        raise
      batch = effective_batch(batch // 2, len(pending), mesh)
      if on_out_of_memory:
        on_out_of_memory(batch)
      continue
    pending = pending[count:]
    yield result.first(count)


def _iter_render_processes(params, maps, key, schedule, target, batch, workers, *,
                           on_steps=None, **render_kwargs):
  setup = cpu_workers.Setup(
      params=jax.tree.map(np.asarray, vgg.truncate_params(params, target.read, target.arch)),
      key_data=np.asarray(jax.random.key_data(key)), schedule=schedule, target=target,
      render_kwargs=render_kwargs,
      jax_config={name: getattr(jax.config, name) for name in cpu_workers.CACHE_SETTINGS})
  pool = cpu_workers.WorkerPool(cpu_workers.usable_cores()[:workers], setup)
  # One thread per worker process waits on it; results are yielded in order.
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxviz") as threads:
    futures = [(threads.submit(pool.render, indices, on_steps), count)
               for indices, count in iter_batches(maps, batch)]
    try:
      for future, count in futures:
        yield future.result().first(count)
    finally:
      for future, _ in futures:
        future.cancel()
      pool.close()


def activation_bytes_per_map(target: Target, side: int, itemsize: int) -> int:
  """Activations one map's forward and backward keep alive at input side `side`.

  Every layer's output up to the target is stored for the backward pass and
  gets a gradient of the same size; x3 leaves room for XLA's temporaries.
  """
  total = 3 * side * side
  for layer in layers_lib.feature_layers(target.arch)[: target.read.index + 1]:
    total += layer.output_side(side) ** 2 * layer.channels
  return 3 * total * itemsize


def auto_batch(schedule: Schedule, target: Target, dtype: str = "float32",
               devices: Sequence[jax.Device] | None = None) -> int:
  """A batch size from the device's memory and the layer's size at the largest scale.

  GPU/TPU: as many maps as fit in half of one device's memory, times the
  number of devices, at most 512. CPU (which runs one worker process per core,
  `auto_workers`): 8 for conv5 and deeper, 1 above, within a quarter of the
  machine's RAM. Measured on 2 cores with 2 worker processes, ms per map-step,
  batch 1 vs 8: layer 10 at 96 px 13.7 vs 17.5; layer 17 at 56 px 10.5 vs
  11.0; layer 24 at 56 px 31.9 vs 17.3.
  """
  devices = list(devices if devices is not None else jax.local_devices())
  per_map = activation_bytes_per_map(target, max(schedule.sides()), jnp.dtype(dtype).itemsize)
  stats = devices[0].memory_stats() or {}
  if devices[0].platform == "cpu" or "bytes_limit" not in stats:
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    preferred = 8 if target.layer.pools_before >= 4 else 1
    return int(max(1, min(preferred, host // 4 // per_map)))
  fits = max(1, int(stats["bytes_limit"] * 0.5 // per_map))
  return int(min(512, fits * len(devices)))

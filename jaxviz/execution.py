"""Where renders run: devices, batch sizes, padding, out-of-memory, CPU worker processes.

The optimisation core (`jaxviz.optvis.render`) renders one batch; this module
decides how a run's maps become batches and where each batch runs:
  * Several local devices: one 1-D mesh (axis "maps"); every batch is split
    over it, each device rendering its share with no communication.
  * One CPU: one worker process per core, each pinned to its core
    (`jaxviz.cpu_workers`), rendering whole batches side by side, when the
    run's recipe and model can be sent to a fresh process (they pickle, and
    nothing lives in a script's `__main__`); else batches run in this process.
  * A GPU or TPU: batches run in this process.
Parameters are pruned to what the objective reads, cast and placed (replicated
over the mesh) once per run, not per batch. Batches keep one shape: the last
is padded by repeating its last map, and the padding is dropped.
"""

from __future__ import annotations

import concurrent.futures
import functools
import itertools
import os
import pickle
from typing import Any, Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxviz import cpu_workers, xla_cache
from jaxviz.errors import JaxvizError, SettingError
from jaxviz.optvis import render
from jaxviz.optvis.recipes import Recipe


# How long a process that finished its share waits at exit for the others: JAX's
# default, 300 s, aborts every process, those still rendering included, whenever
# one finishes more than 5 minutes before another (a resumed sweep, uneven hosts).
SHUTDOWN_WAIT_S = 30 * 24 * 3600


def initialize_distributed() -> tuple[int, int]:
  """`jax.distributed.initialize()`; returns (process index, process count).

  Call it before anything starts JAX's backend. JAX reads
  JAX_COORDINATOR_ADDRESS (and JAX_COORDINATOR_BIND_ADDRESS) from the
  environment but detects the process count and index only on TPU, SLURM and
  Open MPI, so JAX_NUM_PROCESSES and JAX_PROCESS_ID are read here. Renders
  need no collectives, so CPU processes need no collectives implementation.
  A process that dies stops the others (at once if it was process 0, else
  after JAX's 100 s heartbeat timeout); finished maps are kept, and rerunning
  every process once all have exited resumes.
  """
  def from_env(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
      return None
    if not value.isdigit():
      raise JaxvizError(f"the environment variable {name} must be a non-negative integer, "
                        f"got {value!r}")
    return int(value)

  try:
    jax.distributed.initialize(num_processes=from_env("JAX_NUM_PROCESSES"),
                               process_id=from_env("JAX_PROCESS_ID"),
                               shutdown_timeout_seconds=SHUTDOWN_WAIT_S)
  except (ValueError, RuntimeError) as error:
    raise JaxvizError(f"--distributed: {str(error).splitlines()[0]}") from None
  return jax.process_index(), jax.process_count()


def map_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh | None:
  """A 1-D mesh over the local devices with axis "maps"; None for a single device."""
  devices = list(devices if devices is not None else jax.local_devices())
  return Mesh(np.array(devices), ("maps",)) if len(devices) > 1 else None


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
  """How to use this host: (mesh over its devices if several, worker count)."""
  mesh = map_mesh()
  return mesh, 1 if mesh is not None else auto_workers()


def check_batch(batch: int | str) -> int | str:
  """'auto' or a whole number >= 1 (a string of digits is read as one)."""
  if isinstance(batch, str) and batch.isdigit():
    batch = int(batch)
  if batch != "auto" and not (isinstance(batch, int) and batch >= 1):
    raise SettingError("batch", f"must be 'auto' or a number >= 1, got {batch!r}")
  return batch


def iter_batches(maps: Sequence[int], batch: int) -> Iterator[tuple[np.ndarray, int]]:
  """Splits `maps` into batches of exactly `batch` indices, padding the last.

  Yields (indices, real count). Padding repeats the last index, so the compiled
  programs keep one shape; padded results are discarded.
  """
  check_batch(batch)
  maps = list(maps)
  for begin in range(0, len(maps), batch):
    chunk = maps[begin:begin + batch]
    count = len(chunk)
    yield np.asarray(chunk + [chunk[-1]] * (batch - count), np.int64), count


def effective_batch(batch: int, num_maps: int, mesh: Mesh | None, workers: int = 1) -> int:
  """The batch actually run: no bigger than the work or than one worker's share of it,
  and a multiple of the mesh size so every device gets maps."""
  batch = max(1, min(batch, num_maps, -(-num_maps // workers)))
  if mesh is not None:
    batch = -(-batch // mesh.size) * mesh.size
  return batch


def _shapes_of(params) -> tuple:
  """A hashable summary of a parameter tree's structure, shapes and dtypes."""
  leaves, tree = jax.tree.flatten(params)
  return tree, tuple((tuple(np.shape(leaf)), str(getattr(leaf, "dtype", np.result_type(leaf))))
                     for leaf in leaves)


@functools.lru_cache(maxsize=64)
def _traced(recipe: Recipe, model, shapes: tuple, side: int):
  """(the model's input, {name: activation}) shapes of one map's step at `side` px,
  found by tracing the recipe's own path to the model (a resize to its input side,
  several crops per image...) and the model: once per recipe, model and side,
  however many of the checks and estimates below ask (each trace of a network
  costs a fraction of a second)."""
  tree, leaves = shapes
  params = jax.tree.unflatten(tree, [jax.ShapeDtypeStruct(shape, dtype)
                                      for shape, dtype in leaves])
  inputs = _model_input_shape(recipe, model, side)
  names = recipe.objective.layers()
  features = jax.eval_shape(lambda p, x: model.features(p, x, names), params, inputs)
  return inputs, {name: features[name] for name in names}, jax.tree.leaves(features)


def _activations_at(recipe: Recipe, model, params, side: int) -> list[jax.ShapeDtypeStruct]:
  """Shapes of the activations one map's forward pass keeps when its images are `side`
  px (the model's input included)."""
  inputs, _, leaves = _traced(recipe, model, _shapes_of(model.prune(params,
                                                                    recipe.objective.layers())),
                              side)
  return [inputs, *leaves]


def check_model(recipe: Recipe, model, params, units: Sequence[int]) -> None:
  """Refuses, in one line naming the argument, what would otherwise fail deep inside
  Flax or XLA, or silently render something else: `params` the model cannot run
  with, and `units` the objective cannot take (a channel index is clamped by XLA,
  so channel 99 of a 6-channel layer would render channel 5).

  Raises:
    JaxvizError
  """
  names = recipe.objective.layers()
  try:
    _, read, _ = _traced(recipe, model, _shapes_of(model.prune(params, names)),
                         recipe.sides[0])
  except JaxvizError:
    raise
  except Exception as error:  # Flax's ScopeParamShapeError, a missing parameter, a shape clash
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise JaxvizError(f"params: the model cannot run with these parameters "
                      f"({type(error).__name__}: {first[:300]})") from None
  count = recipe.objective.units({name: tuple(read[name].shape) for name in names})
  bad = [int(u) for u in units if int(u) < 0 or (count is not None and int(u) >= count)]
  if bad:
    limit = f"0..{count - 1}" if count is not None else "0 or more"
    raise JaxvizError(f"units: {bad[0]} is not a unit of this objective (it reads "
                      f"{', '.join(sorted(names))}, whose units are {limit})")


@functools.lru_cache(maxsize=256)
def _model_input_shape(recipe: Recipe, model, side: int) -> jax.ShapeDtypeStruct:
  """The shape of what the model sees in one step of one map whose images are `side` px,
  found by tracing the recipe's own path to it."""
  key = jax.random.key(0)
  var = jax.eval_shape(lambda k: recipe.param.init(k, side, recipe.group, jnp.float32, model),
                       key)
  return jax.eval_shape(lambda v, k: render.model_input(recipe, model, v, k), var, key)


def step_work(recipe: Recipe, model) -> tuple[int, ...]:
  """The work of one step of one map at each scale, in the model's input pixels.

  The network's FLOPs per step grow with the pixels it sees (its layers are
  convolutions), so progress and time estimates weigh each scale's steps by
  this: the write-up's last scale costs 50 times its first.
  """
  return tuple(int(np.prod(_model_input_shape(recipe, model, side).shape[:-1]))
               for side in recipe.sides)


def activation_bytes_per_map(recipe: Recipe, model, params, dtype: str = "float32") -> int:
  """Memory one map's forward and backward keep alive at the largest scale.

  Every activation the model computes up to the objective's layers (its input
  included) is stored for the backward pass and gets a gradient of the same
  size; x3 leaves room for XLA's temporaries.
  """
  leaves = _activations_at(recipe, model, params, max(recipe.sides))
  return 3 * sum(int(np.prod(leaf.shape)) for leaf in leaves) * jnp.dtype(dtype).itemsize


def auto_batch(recipe: Recipe, model, params, dtype: str = "float32",
               devices: Sequence[jax.Device] | None = None) -> int:
  """A batch size from the device's memory and the model's activations.

  GPU/TPU: as many maps as fit in half of one device's memory, times the
  number of devices, at most 512. CPU (one worker process per core,
  `auto_workers`): 8 when the objective's layers are at most 4 px wide at the
  first scale (VGG's conv5 at 56 px), else 1, within a quarter of the RAM.
  Batching pays on CPU only where each op is tiny: measured on 2 cores with 2
  worker processes, ms per map-step, batch 1 vs 8: layer 10 at 96 px 13.7 vs
  17.5; layer 17 at 56 px 10.5 vs 11.0; layer 24 at 56 px 31.9 vs 17.3.
  """
  devices = list(devices if devices is not None else jax.local_devices())
  per_map = activation_bytes_per_map(recipe, model, params, dtype)
  stats = devices[0].memory_stats() or {}
  if devices[0].platform == "cpu" or "bytes_limit" not in stats:
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    read = [leaf for leaf in _activations_at(recipe, model, params, recipe.sides[0])[1:]
            if len(leaf.shape) == 4]
    smallest_side = min((leaf.shape[1] for leaf in read), default=recipe.sides[0])
    preferred = 8 if smallest_side <= 4 else 1
    return int(max(1, min(preferred, host // 4 // per_map)))
  fits = max(1, int(stats["bytes_limit"] * 0.5 // per_map))
  return int(min(512, fits * len(devices)))


def is_out_of_memory(error: Exception) -> bool:
  """JAX's own runtime error for an allocation that failed, and nothing else."""
  return isinstance(error, jax.errors.JaxRuntimeError) and "RESOURCE_EXHAUSTED" in str(error)


def prepare_params(recipe: Recipe, model, params, dtype: str, mesh: Mesh | None = None):
  """The parameters a run needs: pruned to the objective's layers, cast to `dtype`,
  placed on the device (replicated over `mesh`), once per run."""
  with render.dtype_context(dtype):
    placed = render.cast_params(model.prune(params, recipe.objective.layers()), dtype)
    if mesh is not None:
      placed = jax.device_put(placed, NamedSharding(mesh, PartitionSpec()))
    return placed


def _sendable(setup: cpu_workers.Setup) -> bool:
  """Whether a fresh Python process can rebuild `setup` (see `cpu_workers`): it pickles,
  and no class or function in it lives in `__main__`, which a worker cannot import."""
  try:
    return b"__main__" not in pickle.dumps(setup, protocol=pickle.HIGHEST_PROTOCOL)
  except (pickle.PicklingError, AttributeError, TypeError):
    return False


def iter_render(recipe: Recipe, model, params, maps: Sequence[int], key: jax.Array, *,
                batch: int = 8, mesh: Mesh | None = None, workers: int = 1,
                dtype: str = "float32", driver: str = "auto", photo: np.ndarray | None = None,
                on_start: Callable[[int], None] | None = None,
                on_steps: Callable[[int, int, int], None] | None = None,
                on_out_of_memory: Callable[[int], None] | None = None,
                params_loader: Callable[[], Any] | None = None
                ) -> Iterator[render.BatchResult]:
  """Renders all `maps` in padded batches; yields each finished batch, in order.

  With `workers` > 1 (CPU), that many pinned processes render batches side
  by side when the setup can be sent to them, else this process renders
  them; `params_loader` (picklable, returning the pruned parameters) lets each
  read them itself instead of being sent them. In this process, a JAX
  out-of-memory error halves the batch and the unfinished maps are retried
  (`on_out_of_memory(new_batch)` is told); at batch 1 (or one map per device)
  the error propagates.

  `on_start(batches)` is told how many batches render side by side, before the
  first; `on_steps(batch_number, count, scale)` that batch number `batch_number`
  (from 0, in the order batches start) finished `count` steps at `scale`.
  """
  render.check_dtype(dtype)
  pending = list(maps)
  batch = effective_batch(batch, len(pending), mesh, workers)
  workers = min(workers, -(-len(pending) // batch))
  if workers > 1:
    if mesh is not None:
      raise ValueError("worker processes and a device mesh are alternatives")
    setup = cpu_workers.Setup(
        recipe=recipe, model=model, key_data=np.asarray(jax.random.key_data(key)),
        params=None if params_loader is not None else jax.tree.map(
            np.asarray, model.prune(params, recipe.objective.layers())),
        params_loader=params_loader,
        render_kwargs={"dtype": dtype, "driver": driver, "photo": photo},
        jax_config={name: getattr(jax.config, name) for name in xla_cache.SETTINGS})
    if _sendable(setup):
      if on_start:
        on_start(workers)
      yield from _iter_render_processes(setup, pending, batch, workers, on_steps)
      return
  if on_start:
    on_start(1)
  placed = prepare_params(recipe, model, params, dtype, mesh)
  for batch_number in itertools.count():  # a retry after running out of memory is a new batch
    if not pending:
      break
    indices, count = next(iter_batches(pending, batch))
    try:
      result = render.render_batch(recipe, model, placed, indices, key, photo=photo,
                                   dtype=dtype, driver=driver, mesh=mesh,
                                   on_steps=_numbered(on_steps, batch_number))
    except Exception as error:
      smallest = mesh.size if mesh is not None else 1
      if not is_out_of_memory(error) or batch <= smallest:
        raise
      batch = effective_batch(batch // 2, len(pending), mesh)
      if on_out_of_memory:
        on_out_of_memory(batch)
      continue
    pending = pending[count:]
    yield result.first(count)


def _numbered(on_steps, batch_number: int):
  """`on_steps` told which batch: what `render.render_batch` calls, `(count, scale)`."""
  if on_steps is None:
    return None
  return functools.partial(on_steps, batch_number)


def _iter_render_processes(setup: cpu_workers.Setup, maps: list[int], batch: int,
                           workers: int, on_steps) -> Iterator[render.BatchResult]:
  pool = cpu_workers.WorkerPool(cpu_workers.usable_cores()[:workers], setup)
  # One thread per worker process waits on it; results are yielded in order.
  with concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="jaxviz") as threads:
    futures = [(threads.submit(pool.render, indices, _numbered(on_steps, number)), count)
               for number, (indices, count) in enumerate(iter_batches(maps, batch))]
    try:
      for future, count in futures:
        yield future.result().first(count)
    finally:
      for future, _ in futures:
        future.cancel()
      pool.close()

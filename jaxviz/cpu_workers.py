"""CPU rendering in worker processes, one per core, each pinned to its core.

Why processes: on a 2-core CPU, two threads of one process each running its
own render step (layer 10, 56 px, batch 1) take 11.8 ms per step, while two
processes pinned to one core each take 9.4 ms, the same as one alone: the
threads of one process share XLA's runtime thread pools, and its kernels then
migrate between cores. Pinning the threads, synchronous dispatch or turning
off Eigen's or YNNPACK's threading do not recover it; separate pinned processes
do (32 maps of the benchmark: 36.5 s with threads, 30.9 s with processes).

Protocol: the parent starts a Python running `cpu_workers.main()` on CORE, writes one
pickled `Setup` and then one pickled index array per batch to its stdin; the
child answers on its stdout with ("steps", (n, scale)) messages while it renders and
then ("result", BatchResult) or ("error", exception). A child never imports
the caller's `__main__` (as multiprocessing's spawn would), so scripts need no
`if __name__ == "__main__"` guard, and it dies with the thread that started it
(PR_SET_PDEATHSIG), so a killed sweep leaves no orphans.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import signal
import subprocess
import sys
from typing import Any, BinaryIO, Callable, Sequence

import numpy as np

from jaxviz.errors import JaxvizError


@dataclasses.dataclass(frozen=True)
class Setup:
  """What every batch of one `execution.iter_render` call shares; sent once per worker."""

  recipe: Any  # optvis.recipes.Recipe
  model: Any  # an optvis model
  key_data: np.ndarray
  params: Any  # pytree of numpy arrays, pruned to what the recipe reads; or None and:
  params_loader: Any  # a picklable callable that loads them (`weights.Loader`): the
  # worker reads them from their file itself instead of being sent them
  render_kwargs: dict  # dtype, driver, photo
  jax_config: dict  # persistent compilation cache settings of the parent


def usable_cores() -> list[int]:
  """The cores this process may run on (taskset limits respected where the OS says)."""
  if hasattr(os, "sched_getaffinity"):
    return sorted(os.sched_getaffinity(0))
  return list(range(os.cpu_count() or 1))  # macOS: no affinity API, workers float


class CoreWorker:
  """One child process pinned to `core` that renders the batches it is sent."""

  def __init__(self, core: int):
    self.core = core
    # The parent's sys.path, so that a recipe or model from any module the parent
    # imported (a test file, a user's package) unpickles in the child.
    self._process = subprocess.Popen(
        [sys.executable, "-c", "from jaxviz import cpu_workers; cpu_workers.main()", str(core)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu",
             "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)})

  @property
  def pid(self) -> int:
    return self._process.pid

  def send_setup(self, setup: Setup) -> None:
    self._send(setup)

  def render(self, indices: np.ndarray, on_steps: Callable[[int, int], None] | None):
    """Renders one batch in the child; returns its `render.BatchResult`."""
    self._send(indices)
    while True:
      try:
        kind, payload = pickle.load(self._process.stdout)
      except EOFError:
        raise self._exited() from None
      if kind == "steps":
        if on_steps:
          on_steps(*payload)
      elif kind == "error":
        raise payload
      else:
        return payload

  def close(self) -> None:
    """Stops the child at once: it holds nothing unsaved (its results are read, its
    compiled programs were written to the cache as they were compiled), and an
    orderly exit of a JAX process takes about a second (measured)."""
    for stream in (self._process.stdin, self._process.stdout):
      try:
        stream.close()
      except OSError:
        pass
    self._process.kill()
    self._process.wait()

  def _send(self, message) -> None:
    try:
      pickle.dump(message, self._process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
      self._process.stdin.flush()
    except BrokenPipeError:
      raise self._exited() from None

  def _exited(self) -> RuntimeError:
    code = self._process.wait()
    return RuntimeError(f"jaxviz worker process on core {self.core} exited with code {code}")


class WorkerPool:
  """Pinned workers shared by threads: `pool.render(indices, on_steps)` runs a batch
  on the next free worker, blocking until one is free."""

  def __init__(self, cores: Sequence[int], setup: Setup):
    # Started from the calling thread, which outlives them: PR_SET_PDEATHSIG
    # fires when the *thread* that forked a child exits.
    self._workers = [CoreWorker(core) for core in cores]
    self._free: queue.SimpleQueue[CoreWorker] = queue.SimpleQueue()
    try:
      for worker in self._workers:
        worker.send_setup(setup)
        self._free.put(worker)
    except BaseException:
      self.close()
      raise

  def render(self, indices: np.ndarray, on_steps: Callable[[int, int], None] | None):
    worker = self._free.get()
    try:
      return worker.render(indices, on_steps)
    finally:
      self._free.put(worker)

  def close(self) -> None:
    for worker in self._workers:
      worker.close()


def _die_with_parent() -> None:
  if sys.platform.startswith("linux"):
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _child_main(core: int, requests: BinaryIO, replies: BinaryIO) -> None:
  # Pinned before jax starts its backend, so XLA sizes its thread pools to this core.
  if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {core})
  import jax

  from jaxviz.optvis import render

  from jaxviz import xla_cache

  setup: Setup = pickle.load(requests)
  xla_cache.quiet()
  for name, value in setup.jax_config.items():
    jax.config.update(name, value)
  key = jax.random.wrap_key_data(setup.key_data)
  dtype = setup.render_kwargs["dtype"]
  params = setup.params if setup.params is not None else setup.params_loader()
  with render.dtype_context(dtype):
    params = render.cast_params(params, dtype)

  def reply(message) -> None:
    pickle.dump(message, replies, protocol=pickle.HIGHEST_PROTOCOL)
    replies.flush()

  while True:
    try:
      indices = pickle.load(requests)
    except EOFError:
      return
    try:
      result = render.render_batch(setup.recipe, setup.model, params, indices, key,
                                   on_steps=lambda n, scale: reply(("steps", (n, scale))),
                                   **setup.render_kwargs)
    except Exception as error:  # sent to the parent, which raises it
      try:
        pickle.dumps(error)
      except Exception:
        error = JaxvizError(f"{type(error).__name__}: {error}")
      reply(("error", error))
    else:
      reply(("result", result))


def main() -> None:
  """The child's entry point (`CoreWorker` starts it; argv[1] is the core)."""
  # Ctrl-C reaches the whole process group; the parent alone answers it (one
  # line, exit 130) and stops its workers, which must not print their own.
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  _die_with_parent()
  # The protocol owns the real stdout; anything else printed goes to stderr.
  replies = os.fdopen(os.dup(1), "wb")
  os.dup2(2, 1)
  _child_main(int(sys.argv[1]), sys.stdin.buffer, replies)

"""The persistent XLA compilation cache: compiled programs kept across processes.

A second run, and each CPU worker process, loads its programs instead of
compiling them (a warm `render` starts in seconds instead of tens). The cache
is an optimisation only, so it must never make noise or break a run:
  * It is probed once, before JAX is told about it: a folder that cannot be
    made or written (read-only, a file in its place) or a disk with little
    room left turns it off, and the caller gets one line saying why.
  * JAX writes an entry in place (`LRUCache.put`), so a write that failed
    half-way (a full disk) leaves a partial entry, which every later run
    would fail to read. Such entries are removed before the cache is used.
  * JAX's own per-program warnings about cache reads and writes (dozens of
    lines when a disk fills up mid-run) are silenced: the program is compiled
    anyway, so nothing is lost but time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path

import filelock
import jax

# A size limit also makes JAX lock the cache (a file lock around every read and
# write): without it, one process can read an entry another is still writing
# ("Error reading persistent compilation cache entry ... truncated stream"), as the
# CPU worker processes of one run, or two runs, do on an empty cache.
MAX_BYTES = 4 * 2**30
# The room a run may need: compiled programs are up to a few MB each.
MIN_FREE_BYTES = 256 * 2**20
PROBE_BYTES = 2**20

SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
            "jax_compilation_cache_max_size")
_JAX_CACHE_WARNINGS = r"Error (reading|writing) persistent compilation cache entry"


def use(directory: os.PathLike | str) -> str | None:
  """Keeps compiled programs in `directory`; returns None, or why the cache is off.

  Every program is kept, however quick to compile: each worker process
  starts cold, and the small per-scale programs add up to 0.4 s per start.
  At most `MAX_BYTES` are kept (least recently used go first).
  """
  directory = Path(directory)
  problem = _problem(directory)
  if problem is not None:
    return f"compilation cache off ({problem}); programs are compiled in each run"
  _repair(directory)
  quiet()
  jax.config.update("jax_compilation_cache_dir", str(directory))
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return None


def quiet() -> None:
  """Silences JAX's per-program warnings about reading or writing cache entries (see
  the module docstring); worker processes call it too."""
  warnings.filterwarnings("ignore", message=_JAX_CACHE_WARNINGS)


def _problem(directory: Path) -> str | None:
  """Why `directory` cannot serve as the cache, or None."""
  probe = directory / f".probe-{os.getpid()}"
  try:
    directory.mkdir(parents=True, exist_ok=True)
    with open(probe, "wb") as handle:
      handle.write(bytes(PROBE_BYTES))
      handle.flush()
      os.fsync(handle.fileno())
    free = shutil.disk_usage(directory).free
  except OSError as error:
    return f"{directory}: {error.strerror or error}"
  finally:
    with contextlib.suppress(OSError):
      probe.unlink()
  if free < MIN_FREE_BYTES:
    return f"{directory}: only {free >> 20} MB free"
  return None


def _repair(directory: Path) -> None:
  """Makes every entry usable by JAX's size-limited cache, under its lock.

  JAX writes `KEY-cache` and then `KEY-atime`, and fails every later write
  ("... FileNotFoundError ...-atime") while any entry lacks its access time. An
  entry without one was either written without a size limit (jaxviz before it
  set one: complete, and given the oldest access time, so it goes first) or
  cut short by a failed write (removed)."""
  try:
    with filelock.FileLock(directory / ".lockfile", timeout=10):
      for entry in directory.glob("*-cache"):
        atime = entry.with_name(entry.name[:-len("-cache")] + "-atime")
        if atime.exists():
          continue
        if _complete(entry):
          atime.write_bytes((0).to_bytes(8, "little"))
        else:
          entry.unlink()
  except (OSError, filelock.Timeout):
    pass  # another process holds the cache, or it is read-only: JAX copes with both


def _complete(entry: Path) -> bool:
  """Whether a cache entry decompresses whole (JAX compresses every entry)."""
  data = entry.read_bytes()
  if not data:
    return False
  try:
    from jax._src import compilation_cache  # JAX's own (de)compression: zstd or zlib

    compilation_cache.decompress_executable(data)
  except ImportError:
    return True  # cannot tell; JAX will report and recompile a broken one
  except Exception:
    return False
  return True

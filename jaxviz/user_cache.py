"""The user cache: where jaxviz keeps what it made once (no JAX here).

Conventions:
  * `$JAXVIZ_CACHE_DIR`, else the platform's user cache dir for jaxviz. It holds
    `<arch>-imagenet.safetensors` (published weights, converted once),
    `converted/` (each `.pth` given as --weights, converted once, by sha256),
    `digests.json` (sha256s remembered by path, size and mtime) and `xla/` (the
    compiled programs). Random weights are never stored. The downloads
    themselves are torch's hub cache's, which jaxviz neither lists nor clears.
  * Listing and clearing stay inside the directory: links are counted and
    removed as links, never followed.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import platformdirs

CACHE_ENV = "JAXVIZ_CACHE_DIR"


def cache_dir() -> Path:
  """`$JAXVIZ_CACHE_DIR`, else the platform's user cache dir for jaxviz."""
  return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("jaxviz"))


def describe(name: str) -> str:
  """What a top-level entry of the cache is, in words."""
  if name.endswith("-imagenet.safetensors"):
    return f"{name.removesuffix('-imagenet.safetensors')}'s published weights, converted"
  return {"converted": ".pth files given as --weights, converted",
          "digests.json": "sha256s of weights files, by path, size and mtime",
          "xla": "compiled programs (XLA's persistent cache)"}.get(name, "not jaxviz's")


@dataclasses.dataclass(frozen=True)
class Entry:
  """One top-level entry: its name, what it is, its bytes and files (links count 0)."""

  name: str
  what: str
  bytes: int
  files: int


def _size(path: Path) -> tuple[int, int]:
  """(bytes, files) under `path`, by lstat: links are not followed or counted."""
  if path.is_symlink():
    return 0, 0
  if not path.is_dir():
    return path.lstat().st_size, 1
  total = count = 0
  for root, dirs, names in os.walk(path, followlinks=False):
    for name in names:
      child = Path(root) / name
      if not child.is_symlink():
        total, count = total + child.lstat().st_size, count + 1
  return total, count


def entries(directory: Path | None = None) -> list[Entry]:
  """The cache's top-level entries, largest first (none if it does not exist)."""
  directory = cache_dir() if directory is None else Path(directory)
  if not directory.is_dir():
    return []
  found = [Entry(path.name, describe(path.name), *_size(path)) for path in directory.iterdir()]
  return sorted(found, key=lambda entry: (-entry.bytes, entry.name))


def clear(directory: Path | None = None) -> list[Entry]:
  """Removes every entry of the cache (a link as a link); returns what was there."""
  directory = cache_dir() if directory is None else Path(directory)
  removed = entries(directory)
  for entry in removed:
    path = directory / entry.name
    if path.is_dir() and not path.is_symlink():
      shutil.rmtree(path)
    else:
      path.unlink()
  return removed

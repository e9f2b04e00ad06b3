"""Running jaxviz from another checkout (`--before DIR` of the command benchmarks)."""

from __future__ import annotations

import os
from pathlib import Path


def jaxviz_env(root: Path | None, work: Path, cache: Path) -> dict:
  """The environment that runs jaxviz from `root` (None: the installed one), with `cache`
  as its user cache; `work` holds the import shim."""
  env = {**os.environ, "JAXVIZ_CACHE_DIR": str(cache)}
  if root is not None:  # jaxviz_convert is its folder convert/, as pyproject maps it
    shim = work / f"shim-{root.name}"
    shim.mkdir(exist_ok=True)
    if not (shim / "jaxviz_convert").exists():
      (shim / "jaxviz_convert").symlink_to(root / "convert")
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(shim)])
  return env

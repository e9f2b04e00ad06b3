"""Render directories: the PNGs, `grid.png` and the record that makes them resumable.

The record (`render.json`, or `render.p<K>.json` for process K of a
multi-process sweep) is JSON:
  * `identity`: everything that decides what a map's render looks like (the
    layer, the recipe, the seed, the dtype, the weights...), and
    `identity_hash`, a hash of it. Renders with another hash are never mixed in.
  * `layer_name`, `reads` (the module whose output was read), `sides`.
  * `files` {map: PNG name}, `objectives` {map: [objective at the end of each
    scale]}, `dead_at_start` {map: first scale alive, or null}, `failed`
    {map: reason}.
  * `runs`: per run, the maps rendered, batch, workers, driver, device, JAX
    version and wall time.
Each PNG is written atomically as soon as its batch finishes and the record is
rewritten after every batch, so a killed render loses nothing finished. This
module owns the format: the render use case (`jaxviz.app`) and the atlas read
it through here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from jaxviz import figures, fileio
from jaxviz.errors import JaxvizError

RECORD_NAME = "render.json"


def record_name(process_index: int = 0, process_count: int = 1) -> str:
  """`render.json`, or `render.p<K>.json` for process K of a multi-process sweep."""
  return RECORD_NAME if process_count == 1 else f"render.p{process_index}.json"


def map_filename(layer_index: int, map_index: int) -> str:
  return f"{layer_index}_{map_index}.png"


def identity_hash(identity: dict) -> str:
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def describe_difference(old: dict, new: dict) -> str:
  changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
  return "differs in " + ", ".join(changed) if changed else "an older record format"


def _record_problem(record) -> str | None:
  """What makes `record` unusable as a render record, or None if nothing does."""
  if not isinstance(record, dict):
    return "not a JSON object"
  record.setdefault("dead_at_start", {})  # fields added after the first format
  record.setdefault("failed", {})
  shapes = {"identity_hash": str, "identity": dict, "sides": list, "files": dict,
            "objectives": dict, "runs": list, "dead_at_start": dict, "failed": dict}
  wrong = [name for name, kind in shapes.items() if not isinstance(record.get(name), kind)]
  if wrong:
    return f"missing or malformed {', '.join(wrong)}"
  identity = record["identity"]
  if not (all(key in identity for key in ("layer", "arch", "seed", "dtype"))
          and isinstance(identity.get("weights"), dict)
          and {"label", "random"} <= set(identity["weights"])):
    return "its identity lacks the layer, arch, seed, dtype or weights"
  if not all(str(m).isdigit() and isinstance(name, str) for m, name in record["files"].items()):
    return "malformed files"
  if not all(str(m).isdigit() and isinstance(values, list) and values
             for m, values in record["objectives"].items()):
    return "malformed objectives"
  return None


def read_record(path) -> dict | None:
  """A render record, checked for shape; None if there is none.

  Raises:
    JaxvizError: naming the file and what to do, if it is unreadable, not
      JSON, or not a record (truncated, edited, another program's file).
  """
  path = Path(path)
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text())
    problem = _record_problem(record)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    problem = str(error)
  if problem is not None:
    raise JaxvizError(f"{path} is not a readable jaxviz render record ({problem}); move it "
                      "away, or rerun with --force to start over")
  return record


def read_records(out_dir, skip_broken: bool = False) -> list[dict]:
  """Every render record in a directory (one per process that wrote there).

  With `skip_broken`, records that `read_record` refuses are left out instead.
  """
  records = []
  for path in sorted(Path(out_dir).glob("render*.json")):
    try:
      record = read_record(path)
    except JaxvizError:
      if not skip_broken:
        raise
      continue
    if record:
      records.append(record)
  return records


def finished_maps(out_dir, identity_hash_: str | None = None,
                  skip_broken: bool = False) -> dict[int, str]:
  """Maps some record lists whose PNG is on disk: {map: file name}.

  With `identity_hash_`, only records made with those settings count.
  """
  done: dict[int, str] = {}
  for record in read_records(out_dir, skip_broken):
    if identity_hash_ is None or record["identity_hash"] == identity_hash_:
      done.update({int(m): name for m, name in record["files"].items()
                   if (Path(out_dir) / name).is_file()})
  return done


def load_renders(out_dir, maps: Sequence[int] | None = None, identity_hash_: str | None = None,
                 skip_broken: bool = False) -> dict[int, np.ndarray]:
  """The finished renders among `maps` (None: all) in a render directory, as [0, 1] arrays."""
  files = finished_maps(out_dir, identity_hash_, skip_broken)
  wanted = sorted(files) if maps is None else [m for m in maps if m in files]
  return {m: fileio.read_image(Path(out_dir) / files[m]) for m in wanted}


class RenderDirectory:
  """One process's view of a render directory, for one identity.

  Opening refuses a record made with another identity unless `force`, which
  starts the record over (an unreadable record too). `finished` lists the
  maps any process finished with this identity.
  """

  def __init__(self, out_dir, identity: dict, header: dict, *, force: bool = False,
               process_index: int = 0, process_count: int = 1):
    self.out_dir = Path(out_dir)
    self.digest = identity_hash(identity)
    self.path = self.out_dir / record_name(process_index, process_count)
    self._skip_broken = force
    try:
      record = read_record(self.path)
    except JaxvizError:
      if not force:
        raise
      record = None
    if record is not None and record["identity_hash"] != self.digest and not force:
      raise JaxvizError(
          f"{self.out_dir} holds renders made with other settings or weights "
          f"({describe_difference(record['identity'], identity)}); use another --out, "
          "or --force to start over")
    if record is None or record["identity_hash"] != self.digest:
      record = {"identity_hash": self.digest, "identity": identity, **header, "files": {},
                "objectives": {}, "dead_at_start": {}, "failed": {}, "runs": []}
    self.record = record

  def finished(self) -> dict[int, str]:
    return finished_maps(self.out_dir, self.digest, self._skip_broken)

  def add(self, map_index: int, filename: str, image: np.ndarray,
          objectives: Sequence[float], first_alive: int | None, dead: bool,
          text: dict[str, str] | None = None) -> None:
    """Writes one map's PNG (with `text` chunks, `fileio.png_text`) and records it
    (`first_alive` matters only if `dead`)."""
    fileio.write_png(self.out_dir / filename, image, text)
    key = str(map_index)
    self.record["failed"].pop(key, None)
    self.record["files"][key] = filename
    self.record["objectives"][key] = [float(v) for v in objectives]
    if dead:
      self.record["dead_at_start"][key] = first_alive

  def fail(self, map_index: int, reason: str) -> None:
    self.record["failed"][str(map_index)] = reason

  def save(self) -> None:
    fileio.write_json(self.path, self.record)

  def write_grid(self, title: str, maps: Sequence[int], text: dict[str, str] | None = None
                 ) -> None:
    """`grid.png`: the finished renders of this identity, `maps` first in their order,
    then any others by index; panels titled "fmap N"."""
    images = load_renders(self.out_dir, None, self.digest, self._skip_broken)
    order = [m for m in maps if m in images] + sorted(set(images) - set(maps))
    if order:
      figures.render_grid([images[m] for m in order], order, self.out_dir / "grid.png",
                          suptitle=title, text=text)

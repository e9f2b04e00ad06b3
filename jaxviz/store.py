"""Render directories: the PNGs, `grid.png` and the record that makes them resumable.

The record (`render.json`, or `render.p<K>.json` for process K of a
multi-process sweep) is JSON:
  * `identity`: everything that decides what a map's render looks like (the
    layer, the recipe, the seed, the dtype, the weights...), and
    `identity_hash`, a hash of it. Renders with another hash are never mixed in.
  * `layer_name`, `reads` (the module whose output was read), `sides`.
  * `files` {map: PNG name}, `sha256` {map: the PNG's sha256}, `objectives`
    {map: [objective at the end of each scale]}, `dead_at_start` {map: first
    scale alive, or null}, `failed` {map: reason}.
  * `trace` (with `--trace`) {map: [objective at every step]}.
  * `runs`: per run, the maps rendered, batch, workers, driver, device, JAX
    version and wall time.
  * `trust` (after `jaxviz trust`), versioned (TRUST_VERSION): the photo set
    (paths within the folder, "/"-separated, and sha256s), k, the taps of the
    path, the similarity below which a map is off the photos' path and the
    shift robustness below which it is fragile, and {map:
    `trust.MapTrust.to_json()` without its map, with the sha256 of the PNG it
    describes}; a map rendered again loses its entry, and an entry is used
    only while that sha256 is the record's.
Each PNG is written atomically as soon as its batch finishes and the record is
rewritten after every batch, so a killed render loses nothing finished. This
module owns the format: the render use case (`jaxviz.app`) and the atlas read
it through here.

A render directory may come from elsewhere (a colleague's sweep, a download),
so a record is untrusted data: every field is checked for type and range
before use, a map's file must be the one name `map_filename` gives it (never
a path: nothing outside the directory is read or written through a record),
and a PNG counts as finished only if its bytes still hash to the recorded
sha256 (a truncated or replaced file is rendered again). One process at a
time renders into a record (`RenderDirectory.lock`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

try:
  import fcntl
except ImportError:  # Windows
  fcntl = None

from jaxviz import fileio
from jaxviz.errors import JaxvizError

RECORD_NAME = "render.json"
DTYPES = ("float32", "float64")  # as optvis.render.DTYPES, without importing JAX here
MAX_MAP = 1 << 20


def record_name(process_index: int = 0, process_count: int = 1) -> str:
  """`render.json`, or `render.p<K>.json` for process K of a multi-process sweep."""
  return RECORD_NAME if process_count == 1 else f"render.p{process_index}.json"


def map_filename(layer_index: int, map_index: int) -> str:
  return f"{layer_index}_{map_index}.png"


def identity_hash(identity: dict) -> str:
  return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def describe_difference(old: dict, new: dict) -> str:
  changed = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
  return "differs in " + ", ".join(fileio.display(key) for key in changed) if changed else \
      "an older record format"


def _is_int(value, low: int = 0, high: int = MAX_MAP) -> bool:
  return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number(value) -> bool:
  return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


_SHA256 = re.compile(r"[0-9a-f]{64}")


_MAP_KEY = re.compile(r"0|[1-9][0-9]{0,6}")  # as str(map): one spelling per map, ASCII digits


def _by_map(table, valid) -> bool:
  """`table` is {map index as decimal text: value} with every value `valid`."""
  return all(isinstance(key, str) and _MAP_KEY.fullmatch(key) is not None and valid(key, value)
             for key, value in table.items())


def _finite(value) -> bool:
  """A finite JSON number (not a bool; an int within float range)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return False
  return abs(value) < 2**1023 if isinstance(value, int) else math.isfinite(value)


TRUST_VERSION = 2  # of the `trust` block's format (`jaxviz.trust` writes it; 2: shifts)
# Bounds on a trust block from elsewhere, far above what `jaxviz trust` writes.
MAX_TRUST_PHOTOS = 100_000
MAX_TRUST_TAPS = 1_000
MAX_TRUST_TEXT = 4_096


def _trust_problem(trust) -> str | None:
  """What is malformed in a record's `trust` block (TRUST_VERSION), or None: every field
  present, of its type and range, and consistent with the others (a forged flag
  disagreeing with its numbers is refused)."""
  if not (isinstance(trust, dict) and isinstance(trust.get("photos"), list)
          and isinstance(trust.get("path"), list) and isinstance(trust.get("maps"), dict)
          and _is_int(trust.get("k"), 2) and _finite(trust.get("off_path_below"))
          and _finite(trust.get("fragile_below"))
          and 0 < len(trust["photos"]) <= MAX_TRUST_PHOTOS
          and 0 < len(trust["path"]) <= MAX_TRUST_TAPS and trust["k"] < len(trust["photos"])):
    return "malformed trust"
  photos, taps, k, threshold = trust["photos"], trust["path"], trust["k"], trust["off_path_below"]
  fragile_below = trust["fragile_below"]
  text = lambda value: isinstance(value, str) and len(value) <= MAX_TRUST_TEXT
  if not all(isinstance(photo, dict) and text(photo.get("path"))
             and isinstance(photo.get("sha256"), str) and _SHA256.fullmatch(photo["sha256"])
             for photo in photos) or not all(map(text, taps)):
    return "malformed trust photos or path"
  optional = lambda entry, name: name in entry and (entry[name] is None or _finite(entry[name]))

  def tap_ok(tap, name) -> bool:
    return (isinstance(tap, dict) and tap.get("tap") == name and optional(tap, "similarity")
            and all(_finite(tap.get(number)) for number in ("render_top", "top_top", "top_rest")))

  def map_ok(key, entry) -> bool:
    if not (isinstance(entry, dict)
            and all(_finite(entry.get(name)) for name in ("objective", "best_photo", "percentile"))
            and optional(entry, "ratio") and optional(entry, "similarity")
            and optional(entry, "shift_robustness")
            and all(isinstance(entry.get(name), bool)
                    for name in ("super_stimulus", "off_path", "fragile"))
            and isinstance(entry.get("sha256"), str) and _SHA256.fullmatch(entry["sha256"])
            and isinstance(entry.get("top_photos"), list) and len(entry["top_photos"]) == k
            and all(_is_int(i, 0, len(photos) - 1) for i in entry["top_photos"])
            and len(set(entry["top_photos"])) == k
            and isinstance(entry.get("profile"), list) and len(entry["profile"]) == len(taps)
            and all(map(tap_ok, entry["profile"], taps))):
      return False
    similarity, robustness = entry["similarity"], entry["shift_robustness"]
    return (0 <= entry["percentile"] <= 100
            and entry["super_stimulus"] == (entry["objective"] > entry["best_photo"])
            and entry["off_path"] == (similarity is not None and similarity < threshold)
            and entry["fragile"] == (robustness is not None and robustness < fragile_below))

  return None if _by_map(trust["maps"], map_ok) else "malformed trust maps"


def _record_problem(record) -> str | None:
  """What makes `record` unusable as a render record, or None if nothing does.

  Fills in fields added after the first format (`dead_at_start`, `failed`,
  `sha256`) as empty."""
  if not isinstance(record, dict):
    return "not a JSON object"
  for name in ("dead_at_start", "failed", "sha256", "trace"):
    record.setdefault(name, {})
  shapes = {"identity_hash": str, "identity": dict, "sides": list, "files": dict,
            "objectives": dict, "runs": list, "dead_at_start": dict, "failed": dict,
            "sha256": dict, "trace": dict}
  wrong = [name for name, kind in shapes.items() if not isinstance(record.get(name), kind)]
  if wrong:
    return f"missing or malformed {', '.join(wrong)}"
  identity = record["identity"]
  weights = identity.get("weights")
  if not (_is_int(identity.get("layer")) and isinstance(identity.get("arch"), str)
          and _is_int(identity.get("seed"), high=2**32 - 1)
          and identity.get("dtype") in DTYPES
          and isinstance(identity.get("pre_relu", False), bool)
          and isinstance(weights, dict) and isinstance(weights.get("label"), str)
          and isinstance(weights.get("random"), bool)):
    return "its identity lacks a valid layer, arch, seed, dtype or weights"
  if not all(isinstance(record.get(name, ""), str) for name in ("layer_name", "reads")):
    return "malformed layer_name or reads"
  if not record["sides"] or not all(_is_int(side, 1) for side in record["sides"]):
    return "malformed sides"
  layer = identity["layer"]
  if not _by_map(record["files"], lambda m, name: name == map_filename(layer, int(m))):
    return "its files are not this layer's map names"
  if not _by_map(record["sha256"], lambda m, digest: isinstance(digest, str)
                 and _SHA256.fullmatch(digest) is not None):
    return "malformed sha256"
  numbers = lambda m, values: (isinstance(values, list) and values
                               and all(_is_number(v) for v in values))
  if not _by_map(record["objectives"], numbers):
    return "malformed objectives"
  if not _by_map(record["trace"], numbers):
    return "malformed trace"
  if not _by_map(record["dead_at_start"], lambda m, scale: scale is None or _is_int(scale)):
    return "malformed dead_at_start"
  if not _by_map(record["failed"], lambda m, reason: isinstance(reason, str)):
    return "malformed failed"
  if not all(isinstance(run, dict) for run in record["runs"]):
    return "malformed runs"
  if "trust" not in record:
    return None
  trust = record["trust"]
  version = trust.get("version") if isinstance(trust, dict) else None
  if not _is_int(version, 1, 1_000_000):
    return "malformed trust"
  if version != TRUST_VERSION:
    del record["trust"]  # another version's numbers: left out, replaced by the next `trust`
    return None
  return _trust_problem(trust)


def read_record(path) -> dict | None:
  """A render record, checked for shape and types; None if there is none.

  Raises:
    JaxvizError: naming the file and what to do, if it is unreadable, not
      JSON, or not a record (truncated, edited, another program's file).
  """
  path = Path(path)
  if path.is_symlink():
    raise JaxvizError(f"{fileio.display(path)} is a symbolic link; a render directory's "
                      "records are read only from the directory itself")
  if not path.is_file():
    return None
  try:
    record = json.loads(path.read_text(encoding="utf-8"))
    problem = _record_problem(record)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError,
          OverflowError) as error:  # ValueError: an integer of over 4300 digits
    problem = (str(error).splitlines() or [type(error).__name__])[0]
  if problem is not None:
    raise JaxvizError(f"{fileio.display(path)} is not a readable jaxviz render record "
                      f"({fileio.display(problem)}); move it away, or rerun with --force to "
                      "start over")
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


def _intact(path: Path, digest: str | None) -> bool:
  """Whether the PNG at `path` is the one its record made: its sha256 matches; for a
  record older than the hashes, it decodes."""
  if not path.is_file() or path.is_symlink():
    return False
  if digest is not None:
    return fileio.sha256_file(path) == digest
  try:
    fileio.read_image(path)
  except JaxvizError:
    return False
  return True


def check_maps(out_dir, identity_hash_: str | None = None, skip_broken: bool = False
               ) -> tuple[dict[int, str], dict[int, str]]:
  """The maps records list, as ({map: file} finished, {map: file} missing or damaged).

  A map is finished when its PNG is on disk and intact (`_intact`). With
  `identity_hash_`, only records made with those settings count.
  """
  done: dict[int, str] = {}
  broken: dict[int, str] = {}
  for record in read_records(out_dir, skip_broken):
    if identity_hash_ is not None and record["identity_hash"] != identity_hash_:
      continue
    for key, name in record["files"].items():
      if _intact(Path(out_dir) / name, record["sha256"].get(key)):
        done[int(key)] = name
        broken.pop(int(key), None)
      elif int(key) not in done:
        broken[int(key)] = name
  return done, broken


def finished_maps(out_dir, identity_hash_: str | None = None,
                  skip_broken: bool = False) -> dict[int, str]:
  """Maps some record lists whose PNG is on disk and intact: {map: file name}."""
  return check_maps(out_dir, identity_hash_, skip_broken)[0]


def read_renders(out_dir, files: dict[int, str], maps: Sequence[int]
                 ) -> dict[int, tuple[np.ndarray, str]]:
  """`maps`' renders among `files` ({map: file name}, `finished_maps`), each as (its [0, 1]
  image, the sha256 of the bytes decoded), each file read once; one that is no longer
  there or no longer an image (rendered again meanwhile) is left out."""
  found = {}
  for map_index in maps:
    path = Path(out_dir) / files[map_index]
    try:
      if path.is_symlink():
        continue
      data = path.read_bytes()
      found[map_index] = (fileio.read_image(path, data=data), hashlib.sha256(data).hexdigest())
    except (OSError, JaxvizError):
      continue
  return found


def load_renders(out_dir, maps: Sequence[int] | None = None, identity_hash_: str | None = None,
                 skip_broken: bool = False) -> dict[int, np.ndarray]:
  """The finished renders among `maps` (None: all) in a render directory, as [0, 1] arrays."""
  files = finished_maps(out_dir, identity_hash_, skip_broken)
  wanted = sorted(files) if maps is None else [m for m in maps if m in files]
  return {m: fileio.read_image(Path(out_dir) / files[m]) for m in wanted}


def _current(record: dict, entries: dict) -> dict:
  """The trust `entries` ({map key: entry}) that describe `record`'s PNGs as it holds them
  now: the entry's sha256 is the record's."""
  return {key: entry for key, entry in entries.items()
          if record["sha256"].get(key) == entry["sha256"]}


def trust_entries(record: dict) -> dict[int, tuple[dict, dict]]:
  """{map: (entry, its block)}: a checked record's trust numbers that describe its PNGs as
  they are now."""
  block = record.get("trust")
  if not block:
    return {}
  return {int(key): (entry, block) for key, entry in _current(record, block["maps"]).items()}


def add_trust(out_dir, identity_hash_: str, trust: dict) -> list[Path]:
  """Writes `trust` (the block `_trust_problem` checks, its maps {map: entry}) into every
  record of `out_dir` with this identity, each keeping the maps it holds; returns
  the records written. Under each record's lock, so no render is running into it."""
  written = []
  for path in sorted(Path(out_dir).glob("render*.json")):
    with exclusive(path.parent / f".{path.name}.lock", path.parent):
      record = read_record(path)
      if record is None or record["identity_hash"] != identity_hash_:
        continue
      # Only the numbers of the very PNGs this record holds now (a map rendered again
      # meanwhile keeps none).
      record["trust"] = {**trust, "maps": _current(record, trust["maps"])}
      fileio.write_json(path, record)
      written.append(path)
  return written


@contextlib.contextmanager
def exclusive(lock_path: Path, out_dir: Path) -> Iterator[None]:
  """An advisory lock (`flock`) on `lock_path` for as long as the block runs, refused at
  once if another process holds it. The file is removed when the lock is released, so
  a finished directory holds only its outputs; a holder that finds its file gone or
  replaced (removed by the previous holder as it let go) counts the lock as taken.
  The file is opened without following a link: a shared directory could point one
  anywhere. Where the OS has no `flock` (Windows), runs are not locked."""
  if fcntl is None:
    yield
    return
  busy = JaxvizError(f"{fileio.display(out_dir)} is being rendered into by another jaxviz "
                     "process; wait for it to finish, or use another --out")
  try:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
  except OSError as error:
    if lock_path.is_symlink():
      raise JaxvizError(f"{fileio.display(lock_path)} is a symbolic link; jaxviz writes only "
                        "inside the render directory") from None
    raise JaxvizError(f"cannot write to {fileio.display(out_dir)}: "
                      f"{error.strerror or error}") from None
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      same = os.fstat(fd).st_ino == os.stat(lock_path, follow_symlinks=False).st_ino
    except (BlockingIOError, FileNotFoundError):
      raise busy from None
    if not same:
      raise busy
    try:
      yield
    finally:
      with contextlib.suppress(OSError):
        lock_path.unlink()
  finally:
    os.close(fd)


class RenderDirectory:
  """One process's view of a render directory, for one identity.

  Opening refuses a record made with another identity unless `force`, which
  starts the record over (an unreadable record too). `finished` lists the
  maps any process finished with this identity; `damaged` those recorded but
  missing or damaged on disk. Writing happens under `lock`.
  """

  def __init__(self, out_dir, identity: dict, header: dict, *, force: bool = False,
               process_index: int = 0, process_count: int = 1):
    self.out_dir = Path(out_dir)
    self.identity, self.header, self.force = identity, header, force
    self.digest = identity_hash(identity)
    self.path = self.out_dir / record_name(process_index, process_count)
    self._skip_broken = force
    self.record = self._open()

  def _open(self) -> dict:
    try:
      record = read_record(self.path)
    except JaxvizError:
      if not self.force:
        raise
      record = None
    if record is not None and record["identity_hash"] != self.digest and not self.force:
      raise JaxvizError(
          f"{fileio.display(self.out_dir)} holds renders made with other settings or weights "
          f"({describe_difference(record['identity'], self.identity)}); use another --out, "
          "or --force to start over")
    if record is None or record["identity_hash"] != self.digest:
      record = {"identity_hash": self.digest, "identity": self.identity, **self.header,
                "files": {}, "sha256": {}, "objectives": {}, "dead_at_start": {},
                "failed": {}, "trace": {}, "runs": []}
    return record

  @contextlib.contextmanager
  def lock(self) -> Iterator["RenderDirectory"]:
    """Holds this record's lock for a run: a second render into the same record (the
    same --out, or the same process share of a sweep) is refused while one runs,
    instead of both writing and one silently replacing the other's PNGs. The record
    is read again once the lock is held, since another run may have changed it."""
    with exclusive(self.out_dir / f".{self.path.name}.lock", self.out_dir):
      self.record = self._open()
      yield self

  def finished(self) -> dict[int, str]:
    return finished_maps(self.out_dir, self.digest, self._skip_broken)

  def damaged(self) -> dict[int, str]:
    """Maps this identity's records list whose PNG is missing or damaged: {map: file}."""
    return check_maps(self.out_dir, self.digest, self._skip_broken)[1]

  def add(self, map_index: int, filename: str, image: np.ndarray,
          objectives: Sequence[float], first_alive: int | None, dead: bool,
          text: dict[str, str] | None = None, trace: Sequence[float] | None = None) -> None:
    """Writes one map's PNG (with `text` chunks, `fileio.png_text`) and records it
    (`first_alive` matters only if `dead`; `trace`, if given, is every step's
    objective)."""
    path = self.out_dir / filename
    fileio.write_png(path, image, text)
    key = str(map_index)
    self.record["failed"].pop(key, None)
    self.record["dead_at_start"].pop(key, None)
    self.record["files"][key] = filename
    self.record["sha256"][key] = fileio.sha256_file(path)
    self.record["objectives"][key] = [float(v) for v in objectives]
    self.record["trace"].pop(key, None)
    self.record.get("trust", {}).get("maps", {}).pop(key, None)
    if trace is not None:
      self.record["trace"][key] = [float(v) for v in trace]
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
    from jaxviz import figures  # matplotlib: imported while the maps render (`app`)

    images = load_renders(self.out_dir, None, self.digest, self._skip_broken)
    order = [m for m in maps if m in images] + sorted(set(images) - set(maps))
    if order:
      figures.render_grid([images[m] for m in order], order, self.out_dir / "grid.png",
                          suptitle=title, text=text)

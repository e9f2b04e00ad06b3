"""The commands that load no model (`layers`, `info`, `atlas`), apart so that they start
without importing JAX; `jaxviz.app.commands` has them with the others."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jaxviz import atlas as atlas_lib
from jaxviz import fileio, nets, store
from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError, SettingError


def positive(name: str, value: int, high: int | None = None) -> int:
  if not isinstance(value, int) or value < 1 or (high is not None and value > high):
    limit = f"between 1 and {high}" if high is not None else "at least 1"
    raise SettingError(name, f"must be {limit}, got {value!r}")
  return value


@dataclasses.dataclass(frozen=True)
class LayersOutcome:
  """The addressable layers (taps) of an architecture (`jaxviz layers`)."""

  arch: str
  side: int
  rows: list[dict]

  def to_json(self) -> dict:
    return {"arch": self.arch, "input_size": self.side, "layers": self.rows}


def layers(arch: str = layers_lib.DEFAULT_ARCH, side: int = 224) -> LayersOutcome:
  """Every layer: index, name, kind, channels, output side at `side` px, the module read
  (and, on the canonical networks, what a storing torch hook would read instead)."""
  positive("side", side)
  vgg_conv = lambda layer: nets.is_vgg(arch) and layer.kind == "conv"
  rows = [{"index": layer.index, "name": layer.name, "kind": layer.kind,
           "channels": layer.channels, "output_size": layer.output_side(side),
           "reads": nets.read_tap(layer, arch).name,
           "pre_relu_reads": layer.name if vgg_conv(layer) else None,
           **({"note": layer.what} if layer.what else {})}
          for layer in nets.taps(arch)]
  return LayersOutcome(arch, side, rows)


@dataclasses.dataclass(frozen=True)
class InfoOutcome:
  """What made a PNG jaxviz wrote (`jaxviz info`)."""

  png: Path
  title: str
  provenance: dict
  trust: dict | None = None  # the map's trust numbers, if its directory's record has them

  def to_json(self) -> dict:
    return {"title": self.title, **self.provenance,
            **({"trust": self.trust} if self.trust is not None else {})}


def info(png) -> InfoOutcome:
  """The provenance a jaxviz PNG carries in its text chunks (untrusted: bounded, flat),
  and, for a render whose directory's record holds them, its trust numbers."""
  text = fileio.png_info(png)
  provenance = text.get(fileio.PROVENANCE_KEY)
  if not isinstance(provenance, dict):
    raise JaxvizError(f"{fileio.display(png)} was not written by jaxviz (it has no jaxviz "
                      "text chunk)")
  return InfoOutcome(Path(png), text.get("Title", ""), provenance, _trust_of(Path(png)))


def _trust_of(png: Path) -> dict | None:
  """The trust entry (with its photo count, k and thresholds) that a record beside `png`
  holds for it: only a record that names this file and the sha256 of these very bytes."""
  records = store.read_records(png.parent, skip_broken=True)
  if not records:
    return None
  digest = fileio.sha256_file(png)
  for record in records:
    key = next((key for key, name in record["files"].items() if name == png.name), None)
    found = store.trust_entries(record).get(int(key)) if key is not None else None
    if found is not None and record["sha256"].get(key) == digest:
      entry, block = found
      return {**entry, "photos": len(block["photos"]), "k": block["k"],
              "off_path_below": block["off_path_below"],
              "fragile_below": block["fragile_below"]}
  return None


def atlas(out, top_images=None) -> atlas_lib.AtlasResult:
  """Rebuilds `out/index.html`, the offline atlas of a render or sweep directory."""
  out = Path(out)
  if not out.is_dir():
    raise JaxvizError(f"not a directory: {fileio.display(out)}")
  table = atlas_lib.read_top_images(top_images) if top_images is not None else None
  return atlas_lib.build_atlas(out, table)


@dataclasses.dataclass(frozen=True)
class CacheOutcome:
  """The user cache (`jaxviz cache`): its directory and entries, and whether they were
  removed."""

  directory: Path
  entries: list
  cleared: bool

  @property
  def bytes(self) -> int:
    return sum(entry.bytes for entry in self.entries)

  def to_json(self) -> dict:
    return {"directory": str(self.directory), "cleared": self.cleared, "bytes": self.bytes,
            "entries": [dataclasses.asdict(entry) for entry in self.entries]}


def cache(clear: bool = False) -> CacheOutcome:
  """What the user cache holds (`user_cache.entries`), removed first if `clear`."""
  from jaxviz import user_cache

  directory = user_cache.cache_dir()
  found = user_cache.clear(directory) if clear else user_cache.entries(directory)
  return CacheOutcome(directory, found, clear)

"""Network parameters and their files: `Weights`, the converted `.safetensors`, random init.

This module never imports torch. Turning a `--weights` value into Weights,
which may need the published-file loaders (`convert/`, installed as
`jaxviz_convert`, torch-free) to read a `.pth` or download the ImageNet
weights, is `jaxviz.app.load_weights`.

Conventions:
  * The file format: flat keys "conv1_1.kernel", ..., "fc8.bias" (VGG; other
    archs' keys are their tables', e.g. "layer1_0.bn1.scale"; HWIO conv
    kernels, (in, out) dense kernels, VGG's fc6 rows in NHWC-flatten order) and
    string metadata: format, arch, source, source_sha256, categories (a JSON
    list). The expected keys and shapes are the arch's explicit table
    (`nets.networks.param_shapes`), checked from the header before any tensor
    is read. The format's name, "jaxviz-vgg/1", predates the other archs and
    is kept so that files converted before them stay readable.
  * Tensors are read when they are first needed, and only those: a render of
    conv3_1 reads 7 MB of VGG16's 528 MB (`Weights.subset`), and its worker
    processes read them from the file themselves (`Weights.loader`) rather
    than being sent them. Each tensor is checked for NaN and Inf as it is read.
  * Random weights are drawn module by module from `fold_in(key, module)`, so
    any subset equals the same modules of the whole draw and costs no disk.
  * A file's sha256 (part of every render's identity) is remembered in the user
    cache by path, size, mtime and inode (`file_digest`), so a warm command does
    not hash 528 MB again.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from pathlib import Path
from typing import Any, Iterable

import jax
import numpy as np
import safetensors
from flax import traverse_util

from jaxviz import fileio, nets
from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError
from jaxviz.nets import networks
from jaxviz.reprs import ShortRepr
from jaxviz.settings import prng_key
from jaxviz.user_cache import CACHE_ENV, cache_dir  # noqa: F401 (re-exported)

FORMAT = "jaxviz-vgg/1"

Params = dict[str, dict[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class FileSource:
  """Parameters in a converter-written `.safetensors` (already checked against `arch`)."""

  path: str

  def load(self, arch: str, modules: tuple[str, ...]) -> Params:
    keys = networks.module_keys(arch, modules)
    try:
      with safetensors.safe_open(self.path, framework="numpy") as handle:
        flat = {key: handle.get_tensor(key) for key in keys}
    except Exception as error:  # safetensors raises several types for a bad file
      raise JaxvizError(f"cannot read weights {fileio.display(self.path)}: "
                        f"{(str(error).splitlines() or [type(error).__name__])[0]}") from None
    check_finite(flat, fileio.display(self.path))
    return nest(flat)


@dataclasses.dataclass(frozen=True)
class RandomSource:
  """torchvision's initialisation, module by module, from a PRNG key's data."""

  key_data: tuple[int, ...]

  def load(self, arch: str, modules: tuple[str, ...]) -> Params:
    key = jax.random.wrap_key_data(np.asarray(self.key_data, np.uint32))
    return nest({f"{module}.{leaf}": value for module in modules
                 for leaf, value in networks.random_module(key, arch, module).items()})


@dataclasses.dataclass(frozen=True, eq=False)
class ArraySource:
  """Parameters already in memory."""

  params: Params

  def load(self, arch: str, modules: tuple[str, ...]) -> Params:
    flat = traverse_util.flatten_dict(self.params, sep=".")  # arrays kept where they are
    return nest({key: flat[key] for key in networks.module_keys(arch, modules)})


@dataclasses.dataclass(frozen=True)
class Loader:
  """A picklable way to load some modules of some weights in another process (a CPU
  worker): called, it returns their parameters."""

  source: FileSource | RandomSource | ArraySource
  arch: str
  modules: tuple[str, ...]

  def __call__(self) -> Params:
    return self.source.load(self.arch, self.modules)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Weights(ShortRepr):
  """A network's parameters and where they came from; tensors are read when needed.

  Attributes:
    arch: "vgg16", ...
    label: what outputs print: "imagenet", "random (seed 0)" or the file path.
    sha256: hash of the file the parameters were read from; None if random.
    categories: the 1000 ImageNet class names, when known.
    source: where the tensors come from (`FileSource`, `RandomSource`, `ArraySource`).
  """

  arch: str
  label: str
  sha256: str | None
  categories: tuple[str, ...] | None
  source: FileSource | RandomSource | ArraySource

  @functools.cached_property
  def params(self) -> Params:
    """Every module's parameters: `{"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)},
    ...}` numpy (all of VGG16's 528 MB; `subset` reads only what a layer needs)."""
    return self.source.load(self.arch, networks.module_names(self.arch))

  def subset(self, modules: Iterable[str]) -> Params:
    """The parameters of `modules` only, read (or drawn) now unless already loaded."""
    modules = tuple(sorted(set(modules)))
    if "params" in self.__dict__:
      return ArraySource(self.params).load(self.arch, modules)
    return self.source.load(self.arch, modules)

  def loader(self, modules: Iterable[str]) -> Loader:
    """`subset(modules)` as a picklable callable, for worker processes."""
    return Loader(self.source, self.arch, tuple(sorted(set(modules))))

  @property
  def is_random(self) -> bool:
    return self.sha256 is None

  def describe(self) -> str:
    if self.is_random:
      return f"{self.label}: RANDOM weights, not a trained network"
    return f"{self.label} (sha256 {self.sha256[:12]})"

  def provenance(self) -> dict:
    """What an output records of the weights that made it (PNG text, `jaxviz info`)."""
    return {"weights": self.label, "random_weights": self.is_random}


def from_arrays(params: Params, arch: str, label: str, sha256: str | None = None,
                categories: tuple[str, ...] | None = None) -> Weights:
  """Weights whose parameters are already in memory (checked against `arch`, finite)."""
  flat = flatten(params)
  report = _shape_report(flat, arch)
  if report:
    raise JaxvizError(f"{label} does not hold {arch} parameters: {report}")
  check_finite(flat, label)
  return Weights(arch, label, sha256, categories, ArraySource(nest(flat)))


def _preview(keys: list[str], limit: int = 6) -> str:
  shown = ", ".join(keys[:limit])
  return shown + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def mismatch_report(found: dict[str, tuple[int, ...]],
                    expected: dict[str, tuple[int, ...]]) -> str | None:
  """Describes how `found` shapes differ from `expected`; None when they match."""
  missing = [key for key in expected if key not in found]
  unexpected = [key for key in found if key not in expected]
  wrong = [f"{key} {tuple(found[key])} != {expected[key]}" for key in expected
           if key in found and tuple(found[key]) != tuple(expected[key])]
  problems = []
  if missing:
    problems.append(f"missing {_preview(missing)}")
  if unexpected:
    problems.append(f"unexpected {_preview(unexpected)}")
  if wrong:
    problems.append(f"wrong shape {_preview(wrong, 3)}")
  return "; ".join(problems) or None


def check_finite(tensors: dict[str, np.ndarray], source: str) -> None:
  """Refuses weights holding NaN or Inf, naming the source and the first such tensor.

  A NaN weight does not always show: a ReLU turns NaN into 0, so a probe would
  print plausible finite means from a broken file.
  """
  for key, value in tensors.items():
    finite = np.isfinite(value)
    if not finite.all():
      raise JaxvizError(f"{source}: tensor {key} holds {finite.size - int(finite.sum())} "
                        "non-finite values (NaN or Inf); these weights cannot be used")


def nest(flat: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
  """{"conv1_1.kernel": ...} -> {"conv1_1": {"kernel": ...}}, the Flax parameter tree."""
  return traverse_util.unflatten_dict(flat, sep=".")


def flatten(params: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
  """The Flax parameter tree -> flat keys "conv1_1.kernel", as numpy arrays."""
  return {key: np.asarray(value)
          for key, value in traverse_util.flatten_dict(params, sep=".").items()}


def save(path: str | os.PathLike, flat: dict[str, np.ndarray], *, arch: str, source: str,
         source_sha256: str, categories: list[str] | None) -> None:
  """Writes converted parameters atomically after checking them against `arch`."""
  report = _shape_report(flat, arch)
  if report:
    raise JaxvizError(f"refusing to save {path}: not {arch} parameters ({report})")
  metadata = {"format": FORMAT, "arch": arch, "source": source, "source_sha256": source_sha256,
              "categories": json.dumps(categories or [])}
  write_safetensors(path, flat, metadata)


def write_safetensors(path: str | os.PathLike, flat: dict[str, np.ndarray],
                      metadata: dict[str, str]) -> None:
  """Writes float32 tensors as a safetensors file, atomically and byte-deterministically.

  `safetensors.numpy.save_file` writes its metadata in a hash map's order, which
  changes from process to process, so the same weights converted twice had two
  sha256s (and a render directory refused to resume). Here the header is JSON
  with sorted keys and the tensors follow in name order: the format's layout (a
  little-endian u64 header length, the header padded with spaces to 8 bytes,
  then the raw data), read back by the safetensors library itself.
  """
  tensors = {key: np.ascontiguousarray(flat[key], dtype="<f4") for key in sorted(flat)}
  header, offset = {"__metadata__": dict(sorted(metadata.items()))}, 0
  for key, value in tensors.items():
    header[key] = {"dtype": "F32", "shape": list(value.shape),
                   "data_offsets": [offset, offset + value.nbytes]}
    offset += value.nbytes
  text = json.dumps(header, separators=(",", ":")).encode()
  text += b" " * (-len(text) % 8)
  with fileio.atomic_write(path) as tmp:
    with open(tmp, "wb") as handle:
      handle.write(len(text).to_bytes(8, "little") + text)
      for value in tensors.values():
        handle.write(memoryview(value).cast("B"))


def load_safetensors(path: str | os.PathLike, label: str | None = None,
                     sha256: str | None = None) -> Weights:
  """A converter-written `.safetensors`: its header is read and strictly checked against
  its arch now, its tensors when they are needed (`Weights.subset`). `sha256`
  (default: the file's, `file_digest`) names the weights in render identities."""
  path = Path(path)
  where = fileio.display(path)
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {where}")
  try:
    with safetensors.safe_open(str(path), framework="numpy") as handle:
      metadata = handle.metadata() or {}
      shapes = {key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()}
  except Exception as error:  # safetensors raises several types for a bad header
    raise JaxvizError(f"cannot read weights {where}: not a complete safetensors file "
                      f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                      ) from None
  if metadata.get("format") != FORMAT:
    raise JaxvizError(f"{where} is a safetensors file but not one written by `jaxviz convert`")
  arch = metadata.get("arch", "")
  if arch not in nets.ARCHS:
    raise JaxvizError(f"{where}: unknown architecture {fileio.display(arch)!r} in its metadata")
  report = mismatch_report(shapes, networks.param_shapes(arch))
  if report:
    raise JaxvizError(f"{where} does not hold {arch} parameters: {report}")
  if path.stat().st_size != 8 + _header_size(path) + 4 * sum(
      int(np.prod(shape)) for shape in shapes.values()):
    raise JaxvizError(f"cannot read weights {where}: not a complete safetensors file "
                      "(its size does not match its header)")
  try:
    categories = tuple(json.loads(metadata.get("categories", "[]"))) or None
  except json.JSONDecodeError:
    categories = None
  return Weights(arch, label or where, sha256 or file_digest(path), categories,
                 FileSource(str(path.resolve())))


def _header_size(path: Path) -> int:
  with open(path, "rb") as handle:
    return int.from_bytes(handle.read(8), "little")


def random_weights(key: jax.Array | int = 0,
                   arch: str = layers_lib.DEFAULT_ARCH) -> Weights:
  """The reference's initialisation from a PRNG key or an int seed (VGG: torchvision's,
  convs kaiming normal (fan_out, ReLU gain), dense normal(0, 0.01), biases 0); module by module
  (`nets.networks.random_module`), drawn when needed, never cached on disk."""
  nets.check_arch(arch)
  if isinstance(key, int):
    label, key = f"random (seed {key})", prng_key(key, "the seed of random weights")
  else:
    label = "random"
  data = tuple(int(v) for v in np.asarray(jax.random.key_data(key)).ravel())
  return Weights(arch, label, None, None, RandomSource(data))


# A file's sha256, remembered by path, size, mtime and inode (`file_digest`).
DIGESTS_NAME = "digests.json"
MAX_DIGESTS = 256


def file_digest(path: str | os.PathLike) -> str:
  """The sha256 of a file, computed once per version of it: remembered in the user
  cache (`digests.json`) by resolved path, size, mtime and inode, so that a warm
  command does not read 528 MB to hash it. A changed file has a new size, mtime
  or inode, and is hashed again."""
  path = Path(path).resolve()
  stat = path.stat()
  stamp = [stat.st_size, stat.st_mtime_ns, stat.st_ino]
  memo_path = cache_dir() / DIGESTS_NAME
  try:
    memo = json.loads(memo_path.read_text(encoding="utf-8"))
    if not isinstance(memo, dict):
      memo = {}
  except (OSError, ValueError):
    memo = {}
  entry = memo.get(str(path))
  if (isinstance(entry, dict) and entry.get("stamp") == stamp
      and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64):
    return entry["sha256"]
  digest = fileio.sha256_file(path)
  memo.pop(str(path), None)
  memo[str(path)] = {"stamp": stamp, "sha256": digest}
  memo = dict(list(memo.items())[-MAX_DIGESTS:])
  try:
    fileio.write_json(memo_path, memo)
  except JaxvizError:
    pass  # a cache that cannot be written only costs time
  return digest


def _shape_report(flat: dict[str, np.ndarray], arch: str) -> str | None:
  """How `flat`'s names and shapes differ from `arch`'s parameters; None if they match."""
  return mismatch_report({k: v.shape for k, v in flat.items()}, networks.param_shapes(arch))


def converted_path(sha256: str) -> Path:
  """Where a `.pth` with this sha256 is kept converted (`jaxviz.app.load_weights`)."""
  return cache_dir() / "converted" / f"{sha256}.safetensors"


def imagenet_cache_path(arch: str = layers_lib.DEFAULT_ARCH) -> Path:
  return cache_dir() / f"{arch}-imagenet.safetensors"

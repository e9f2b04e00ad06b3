"""Network parameters and their files: `Weights`, the converted `.safetensors`, random init.

This module never imports torch. Turning a `--weights` value into Weights,
which may need the torch side (`convert/`, installed as `jaxviz_convert`) to
read a `.pth` or download the ImageNet weights, is `jaxviz.app.load_weights`.

The file format: flat keys "conv1_1.kernel", ..., "fc8.bias" (HWIO conv
kernels, (in, out) dense kernels, fc6 rows in NHWC-flatten order) and string
metadata: format, arch, source, source_sha256, categories (a JSON list).
The expected keys and shapes are the Flax module's (`vgg.param_shapes`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import platformdirs
import safetensors
from flax import traverse_util

from jaxviz import fileio, vgg
from jaxviz import layers as layers_lib
from jaxviz.errors import JaxvizError
from jaxviz.settings import prng_key

FORMAT = "jaxviz-vgg/1"
CACHE_ENV = "JAXVIZ_CACHE_DIR"


@dataclasses.dataclass(frozen=True)
class Weights:
  """Parameters and where they came from.

  Attributes:
    params: `{"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)}, ...}` numpy.
    arch: "vgg16", ...
    label: what outputs print: "imagenet", "random (seed 0)" or the file path.
    sha256: hash of the file the parameters were read from; None if random.
    categories: the 1000 ImageNet class names, when known.
  """

  params: dict[str, dict[str, np.ndarray]]
  arch: str
  label: str
  sha256: str | None
  categories: tuple[str, ...] | None

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


def load_safetensors(path: str | os.PathLike, label: str | None = None) -> Weights:
  """Reads a converter-written `.safetensors`, strictly checked against its arch."""
  path = Path(path)
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {path}")
  try:
    metadata, flat = _read_flat(path)
  except Exception as error:  # safetensors raises several types for a bad header
    raise JaxvizError(f"cannot read weights {path}: not a complete safetensors file "
                      f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                      ) from None
  if metadata.get("format") != FORMAT:
    raise JaxvizError(f"{path} is a safetensors file but not one written by `jaxviz convert`")
  arch = metadata.get("arch", "")
  if arch not in layers_lib.ARCH_CONFIGS:
    raise JaxvizError(f"{path}: unknown architecture {arch!r} in its metadata")
  report = _shape_report(flat, arch)
  if report:
    raise JaxvizError(f"{path} does not hold {arch} parameters: {report}")
  check_finite(flat, str(path))
  categories = tuple(json.loads(metadata.get("categories", "[]"))) or None
  return Weights(nest(flat), arch, label or fileio.display(path), fileio.sha256_file(path),
                 categories)


# Bumped whenever random initialisation changes, so cached random weights follow it.
RANDOM_FORMAT = "jaxviz-random/1"


def random_weights(key: jax.Array | int = 0,
                   arch: str = layers_lib.DEFAULT_ARCH) -> Weights:
  """torchvision's VGG initialisation (the Flax module's initializers) from a PRNG key
  or an int seed: convs kaiming normal (fan_out, ReLU gain), dense normal(0, 0.01),
  biases 0.

  An int seed's weights are cached in the user cache (`<cache>/random/`): drawing
  VGG16's 138M numbers takes seconds, reading them back a fraction of one.
  """
  layers_lib.check_arch(arch)
  if not isinstance(key, int):
    return Weights(jax.tree.map(np.asarray, vgg.init_params(key, arch)), arch, "random", None,
                   None)
  label = f"random (seed {key})"
  cached = cache_dir() / "random" / f"{arch}-seed{key}.safetensors"
  params = _read_cached_random(cached, arch)
  if params is None:
    params = jax.tree.map(np.asarray, vgg.init_params(prng_key(key, "the seed of random weights"),
                                                      arch))
    try:
      write_safetensors(cached, flatten(params), {"format": RANDOM_FORMAT, "arch": arch})
    except JaxvizError:
      pass  # a cache that cannot be written only costs time
  return Weights(params, arch, label, None, None)


def _read_cached_random(path: Path, arch: str):
  """Cached random parameters of `arch`, or None if absent, stale or unreadable."""
  try:
    metadata, flat = _read_flat(path)
  except Exception:  # absent, truncated or foreign: draw the weights again
    return None
  if metadata != {"format": RANDOM_FORMAT, "arch": arch} or _shape_report(flat, arch):
    return None
  return nest(flat)


def _read_flat(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
  """A safetensors file's (metadata, {name: array}); raises what safetensors raises."""
  with safetensors.safe_open(str(path), framework="numpy") as handle:
    return handle.metadata() or {}, {key: handle.get_tensor(key) for key in handle.keys()}


def _shape_report(flat: dict[str, np.ndarray], arch: str) -> str | None:
  """How `flat`'s names and shapes differ from `arch`'s parameters; None if they match."""
  return mismatch_report({k: v.shape for k, v in flat.items()}, vgg.param_shapes(arch))


def cache_dir() -> Path:
  """`$JAXVIZ_CACHE_DIR`, else the platform's user cache dir for jaxviz."""
  return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("jaxviz"))


def imagenet_cache_path(arch: str = layers_lib.DEFAULT_ARCH) -> Path:
  return cache_dir() / f"{arch}-imagenet.safetensors"

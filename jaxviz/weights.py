"""Where the network's parameters come from: `--weights imagenet|random|PATH`.

  * `imagenet` (default): the converted file in the user cache
    (`<cache>/<arch>-imagenet.safetensors`). If it is absent, torchvision
    downloads its own `.pth` (its cache, its progress bar) and `convert/`
    converts it once.
  * `random` or `random:SEED`: torchvision-style initialisation from an
    explicit PRNG key; every output that uses it says so.
  * a path: a `.safetensors` written by the converter, or a torchvision
    `.pth` state dict (converted in memory).

This module never imports torch; the torch side lives in `convert/` and is
imported only when a `.pth` has to be read or downloaded.

The file format: flat keys "conv1_1.kernel", ..., "fc8.bias" (HWIO conv
kernels, (in, out) dense kernels, fc6 rows in NHWC-flatten order) and string
metadata: format, arch, source, source_sha256, categories (a JSON list).
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
import safetensors.numpy

from jaxviz import fileio
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


def param_shapes(arch: str = layers_lib.DEFAULT_ARCH) -> dict[str, tuple[int, ...]]:
  """The expected flat key -> shape table for `arch`, in network order."""
  shapes: dict[str, tuple[int, ...]] = {}
  in_channels = 3
  for layer in layers_lib.conv_layers(arch):
    shapes[f"{layer.name}.kernel"] = (3, 3, in_channels, layer.channels)
    shapes[f"{layer.name}.bias"] = (layer.channels,)
    in_channels = layer.channels
  for name, fan_in, fan_out in layers_lib.CLASSIFIER:
    shapes[f"{name}.kernel"] = (fan_in, fan_out)
    shapes[f"{name}.bias"] = (fan_out,)
  return shapes


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
  params: dict[str, dict[str, np.ndarray]] = {}
  for key, value in flat.items():
    module, leaf = key.split(".")
    params.setdefault(module, {})[leaf] = value
  return params


def flatten(params: dict[str, dict[str, Any]]) -> dict[str, np.ndarray]:
  return {f"{module}.{leaf}": np.asarray(value)
          for module, leaves in params.items() for leaf, value in leaves.items()}


def save(path: str | os.PathLike, flat: dict[str, np.ndarray], *, arch: str, source: str,
         source_sha256: str, categories: list[str] | None) -> None:
  """Writes converted parameters atomically after checking them against `arch`."""
  report = mismatch_report({k: v.shape for k, v in flat.items()}, param_shapes(arch))
  if report:
    raise JaxvizError(f"refusing to save {path}: not {arch} parameters ({report})")
  metadata = {"format": FORMAT, "arch": arch, "source": source, "source_sha256": source_sha256,
              "categories": json.dumps(categories or [])}
  tensors = {key: np.ascontiguousarray(value, dtype=np.float32) for key, value in flat.items()}
  with fileio.atomic_write(path) as tmp:
    safetensors.numpy.save_file(tensors, str(tmp), metadata=metadata)


def load_safetensors(path: str | os.PathLike, label: str | None = None) -> Weights:
  """Reads a converter-written `.safetensors`, strictly checked against its arch."""
  path = Path(path)
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {path}")
  try:
    with safetensors.safe_open(str(path), framework="numpy") as handle:
      metadata = handle.metadata() or {}
      flat = {key: handle.get_tensor(key) for key in handle.keys()}
  except Exception as error:  # safetensors raises several types for a bad header
    raise JaxvizError(f"cannot read weights {path}: not a complete safetensors file "
                      f"({str(error).splitlines()[0] if str(error) else type(error).__name__})"
                      ) from None
  if metadata.get("format") != FORMAT:
    raise JaxvizError(f"{path} is a safetensors file but not one written by `jaxviz convert`")
  arch = metadata.get("arch", "")
  if arch not in layers_lib.ARCH_CONFIGS:
    raise JaxvizError(f"{path}: unknown architecture {arch!r} in its metadata")
  report = mismatch_report({k: v.shape for k, v in flat.items()}, param_shapes(arch))
  if report:
    raise JaxvizError(f"{path} does not hold {arch} parameters: {report}")
  check_finite(flat, str(path))
  categories = tuple(json.loads(metadata.get("categories", "[]"))) or None
  return Weights(nest(flat), arch, label or str(path), fileio.sha256_file(path), categories)


def random_weights(key: jax.Array | int = 0,
                   arch: str = layers_lib.DEFAULT_ARCH) -> Weights:
  """torchvision's VGG initialisation from a PRNG key (or an int seed).

  Convs: kaiming normal, fan_out, ReLU gain (std sqrt(2 / (9 * out))), bias 0.
  Dense: normal(0, 0.01), bias 0.
  """
  seed = key if isinstance(key, int) else None
  if isinstance(key, int):
    key = prng_key(key, "the seed of random weights")
  shapes = param_shapes(arch)
  keys = jax.random.split(key, len(shapes))
  flat = {}
  for subkey, (name, shape) in zip(keys, shapes.items()):
    if name.endswith(".bias"):
      flat[name] = np.zeros(shape, np.float32)
      continue
    if len(shape) == 4:
      std = np.sqrt(2.0 / (shape[0] * shape[1] * shape[3]))
    else:
      std = 0.01
    flat[name] = np.asarray(jax.random.normal(subkey, shape, np.float32)) * np.float32(std)
  label = f"random (seed {seed})" if seed is not None else "random"
  return Weights(nest(flat), arch, label, None, None)


def cache_dir() -> Path:
  """`$JAXVIZ_CACHE_DIR`, else the platform's user cache dir for jaxviz."""
  return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("jaxviz"))


def imagenet_cache_path(arch: str = layers_lib.DEFAULT_ARCH) -> Path:
  return cache_dir() / f"{arch}-imagenet.safetensors"


def _convert_module():
  try:
    import convert.torchvision_vgg as torchvision_vgg  # the torch side, imported on demand
  except ImportError as error:
    raise JaxvizError(f"reading torchvision weights needs torch and torchvision ({error}); "
                      "install them, or pass a converted .safetensors file") from None
  return torchvision_vgg


def resolve(spec: str = "imagenet", arch: str = layers_lib.DEFAULT_ARCH) -> Weights:
  """Turns a `--weights` value into Weights; see the module docstring."""
  layers_lib.check_arch(arch)
  spec = spec.strip()
  if spec == "random" or spec.startswith("random:"):
    seed_text = spec.partition(":")[2] or "0"
    if not seed_text.isdigit():
      raise JaxvizError(f"--weights random:SEED needs an integer seed, got {seed_text!r}")
    return random_weights(int(seed_text), arch)
  if spec == "imagenet":
    cached = imagenet_cache_path(arch)
    if not cached.is_file():
      _convert_module().download_and_convert(arch, cached)
    return load_safetensors(cached, label="imagenet")
  path = Path(spec).expanduser()
  if path.suffix in (".pth", ".pt"):
    return _convert_module().load_pth_as_weights(path)
  if path.suffix == ".safetensors" or path.exists():
    return load_safetensors(path)
  raise JaxvizError(f"--weights {spec!r} is not 'imagenet', 'random[:SEED]' or an existing "
                    ".safetensors/.pth file")

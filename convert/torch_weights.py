"""Any arch's torch state dict -> jaxviz's `.safetensors`: reading `.pth` files, the strict
check against the arch's weight table, and the reference's own download.

Conventions:
  * Each arch's weight table pairs every torch key with one flat Flax key and a
    transform: VGG's is `jaxviz_convert.torchvision_vgg`, the canonical
    networks' are `jaxviz_convert.<arch>` (which also name the keys of the
    published file that are dropped, `IGNORED_KEYS`: batch norm's
    `num_batches_tracked`, GoogLeNet's auxiliary heads).
  * A state dict must match its table exactly, after the ignored keys are
    dropped, before anything is written. With no arch given, the one whose table
    it matches is taken; one given that is not the file's is refused, naming
    the file's.
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from jaxviz import fileio, nets
from jaxviz import layers as layers_lib
from jaxviz import weights as weights_lib
from jaxviz.errors import JaxvizError
from jaxviz.nets import networks
from jaxviz_convert import torchvision_vgg

Transform = Callable[[np.ndarray], np.ndarray]


def _arch_module(arch: str):
  return importlib.import_module(f"jaxviz_convert.{nets.check_arch(arch)}")


def weight_table(arch: str) -> list[tuple[str, str, Transform]]:
  """(torch key, flat Flax key, transform) for every parameter of `arch`."""
  if nets.is_vgg(arch):
    return torchvision_vgg.weight_table(arch)
  return _arch_module(arch).weight_table()


def ignored_keys(arch: str) -> tuple[str, ...]:
  """Regular expressions of the keys of `arch`'s published file that are dropped."""
  return () if nets.is_vgg(arch) else tuple(_arch_module(arch).IGNORED_KEYS)


def categories(arch: str) -> list[str] | None:
  """The class names as the reference ships them (None where it ships none)."""
  if nets.is_vgg(arch):
    return torchvision_vgg.imagenet_categories()
  return _arch_module(arch).categories()


def download_imagenet(arch: str) -> Path:
  """The published weights of `arch` through the reference's own loader (torchvision's,
  or torch.hub's for lucent's inceptionv1); returns the file in torch's cache."""
  if nets.is_vgg(arch):
    return torchvision_vgg.download_imagenet(arch)
  return _arch_module(arch).download_imagenet()


def torch_shapes(arch: str) -> dict[str, tuple[int, ...]]:
  """Expected torch key -> shape, derived from the arch's explicit Flax table (HWIO
  kernels are OIHW in torch, dense kernels transposed)."""
  flax_shapes = networks.param_shapes(arch)
  shapes = {}
  for torch_key, flax_key, _ in weight_table(arch):
    shape = flax_shapes[flax_key]
    if len(shape) == 4:
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif len(shape) == 2:
      shape = (shape[1], shape[0])
    shapes[torch_key] = shape
  return shapes


def _kept(found: dict, arch: str) -> dict:
  patterns = [re.compile(pattern) for pattern in ignored_keys(arch)]
  return {key: value for key, value in found.items()
          if not any(pattern.fullmatch(key) for pattern in patterns)}


def mismatch(found: dict[str, tuple[int, ...]], arch: str) -> str | None:
  """How `found` (torch key -> shape) differs from `arch`'s table; None if it matches."""
  return weights_lib.mismatch_report(_kept(found, arch), torch_shapes(arch))


def detect_arch(state_dict: dict[str, np.ndarray]) -> str | None:
  """The arch whose table matches `state_dict` exactly, if any."""
  found = {key: tuple(value.shape) for key, value in state_dict.items()}
  return next((arch for arch in nets.ARCHS if mismatch(found, arch) is None), None)


def _closest_arch(found: dict[str, tuple[int, ...]]) -> str:
  """The arch sharing the most keys with `found` (VGG16 on a tie: what users mostly mean)."""
  shared = {arch: len(set(_kept(found, arch)) & set(torch_shapes(arch))) for arch in nets.ARCHS}
  return max(nets.ARCHS, key=lambda arch: (shared[arch], arch == layers_lib.DEFAULT_ARCH))


def _arch_of(state_dict: dict[str, np.ndarray], arch: str | None, source: str) -> str:
  found = {key: tuple(value.shape) for key, value in state_dict.items()}
  if arch is not None:
    nets.check_arch(arch)
    if mismatch(found, arch) is not None:
      detected = detect_arch(state_dict)
      if detected is not None:
        raise JaxvizError(f"{source} is a {detected} state dict, not {arch}; pass "
                          f"--arch {detected} or leave --arch out")
    return arch
  detected = detect_arch(state_dict)
  if detected is None:
    closest = _closest_arch(found)
    raise JaxvizError(f"{source} is not a torchvision VGG state dict nor one of "
                      f"{', '.join(nets.CANONICAL_ARCHS)} (compared with {closest}: "
                      f"{mismatch(found, closest)})")
  return detected


def state_dict_to_flat(state_dict: dict[str, np.ndarray], arch: str,
                       source: str = "state dict") -> dict[str, np.ndarray]:
  """Strictly checks a state dict against `arch`'s table and converts it to flat Flax keys."""
  kept = _kept(state_dict, arch)
  report = mismatch({key: tuple(value.shape) for key, value in kept.items()}, arch)
  if report:
    raise JaxvizError(f"{source} is not a {'torchvision ' if nets.is_vgg(arch) else ''}"
                      f"{arch} state dict: {report}")
  weights_lib.check_finite(kept, source)
  return {flax_key: np.ascontiguousarray(transform(np.asarray(kept[torch_key], np.float32)))
          for torch_key, flax_key, transform in weight_table(arch)}


def read_pth(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """Loads a `.pth` state dict with `weights_only=True` (no pickled code runs)."""
  path = Path(path)
  if not path.is_file():
    raise JaxvizError(f"weights file not found: {path}")
  try:
    loaded = torch.load(path, map_location="cpu", weights_only=True)
  except pickle.UnpicklingError as error:
    if "Unsupported global" not in str(error):
      raise JaxvizError(f"cannot read weights {path}: not a PyTorch state dict file") from None
    # weights_only refuses pickled classes: a whole `torch.save(model)`, for one.
    raise JaxvizError(f"{path} holds pickled Python objects (a whole model?), not a state "
                      "dict; save model.state_dict() instead") from None
  except Exception as error:  # torch raises many types for truncated or foreign files
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    raise JaxvizError(f"cannot read weights {path}: {first_line[:200]}") from None
  if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"],
                                                                        dict):
    loaded = loaded["state_dict"]
  if not isinstance(loaded, dict) or not all(isinstance(v, torch.Tensor)
                                             for v in loaded.values()):
    raise JaxvizError(f"{path} does not hold a state dict (a dict of tensors)")
  return {key: value.detach().to(torch.float32).numpy() for key, value in loaded.items()}


def convert_file(src: str | os.PathLike, dst: str | os.PathLike,
                 arch: str | None = None, source_sha256: str | None = None) -> str:
  """Converts a `.pth` state dict into a jaxviz `.safetensors`; returns the arch.

  The output is written atomically: a failed conversion leaves no file.
  `source_sha256` is the source's hash if the caller knows it already.
  """
  src = Path(src)
  state_dict = read_pth(src)
  arch = _arch_of(state_dict, arch, str(src))
  flat = state_dict_to_flat(state_dict, arch, str(src))
  weights_lib.save(dst, flat, arch=arch, source=src.name,
                   source_sha256=source_sha256 or fileio.sha256_file(src),
                   categories=categories(arch))
  return arch


# torch.hub's HASH_REGEX: a published file's name carries a prefix of its sha256
# ("vgg16-397923af.pth"). torch checks it only when it downloads with check_hash, and
# never for a file already in its cache.
HASH_IN_NAME = re.compile(r"-([a-f0-9]+)\.")


def name_hash(path: str | os.PathLike) -> str | None:
  """The sha256 prefix a published file's name carries, if any."""
  match = HASH_IN_NAME.search(os.path.basename(path))
  return match.group(1) if match else None


def check_published(path: str | os.PathLike) -> None:
  """Refuses a file in torch's cache whose sha256 does not start with the prefix in its
  name: not the published file (a partial download, or another file put there), which
  would otherwise be labelled `imagenet`."""
  prefix = name_hash(path)
  if prefix and not fileio.sha256_file(path).startswith(prefix):
    raise JaxvizError(f"{path} is not the published file its name says (its sha256 does not "
                      f"start with {prefix}); delete it to download it again, or pass it as "
                      "--weights PATH")


def download_and_convert(arch: str, dst: str | os.PathLike) -> None:
  """Fetches (or finds in torch's cache) the published weights of `arch`, checks them
  against the hash in their name, and converts them."""
  path = download_imagenet(arch)
  check_published(path)
  convert_file(path, dst, arch)

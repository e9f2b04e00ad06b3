"""Any arch's torch state dict -> jaxviz's `.safetensors`: the strict check against the
arch's weight table, the conversion, and the published weights' download. Needs no
torch: `.pth` files are read by `jaxviz_convert.pth`.

Conventions:
  * Each arch's weight table pairs every torch key with one flat Flax key and a
    transform: VGG's is `jaxviz_convert.torchvision_vgg`, the canonical
    networks' are `jaxviz_convert.<arch>` (which also give the published file's
    address and also name the keys of the
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
import re
from pathlib import Path

import numpy as np

from jaxviz import fileio, nets
from jaxviz import layers as layers_lib
from jaxviz import weights as weights_lib
from jaxviz.errors import JaxvizError
from jaxviz.nets import networks
from jaxviz_convert import pth, rows, torchvision_vgg


def _arch_module(arch: str):
  return importlib.import_module(f"jaxviz_convert.{nets.check_arch(arch)}")


def weight_table(arch: str) -> list[rows.Row]:
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
  """The published weights of `arch` (torchvision's file, or lucent's for inceptionv1) in
  torch's hub cache, downloaded there if absent and checked against their name's hash."""
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


def convert_file(src: str | os.PathLike, dst: str | os.PathLike,
                 arch: str | None = None, source_sha256: str | None = None) -> str:
  """Converts a `.pth` state dict into a jaxviz `.safetensors`; returns the arch.

  The output is written atomically: a failed conversion leaves no file.
  `source_sha256` is the source's hash if the caller knows it already.
  """
  src = Path(src)
  state_dict = pth.read_state_dict(src)
  arch = _arch_of(state_dict, arch, str(src))
  flat = state_dict_to_flat(state_dict, arch, str(src))
  weights_lib.save(dst, flat, arch=arch, source=src.name,
                   source_sha256=source_sha256 or fileio.sha256_file(src),
                   categories=categories(arch))
  return arch


def download_and_convert(arch: str, dst: str | os.PathLike) -> None:
  """Fetches (or finds in torch's cache) the published weights of `arch`, checked against
  the hash in their name, and converts them."""
  convert_file(download_imagenet(arch), dst, arch)

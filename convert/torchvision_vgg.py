"""torchvision VGG state dicts -> jaxviz's Flax parameters.

The weight table is explicit: every torchvision key is paired with one flat
Flax key and one transform, and a state dict must match the table exactly
(no missing, unexpected or wrong-shaped keys) before anything is written.

Transforms:
  * conv weight (O, I, kh, kw) -> HWIO kernel.
  * linear weight (out, in) -> (in, out) kernel.
  * fc6 additionally reorders its 25088 inputs: torchvision flattens pool5 as
    NCHW (index c*49 + h*7 + w) while the Flax model flattens NHWC
    (index h*7*512 + w*512 + c).
"""

from __future__ import annotations

import os
import pickle
import urllib.error
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision

from jaxviz import fileio, vgg
from jaxviz import layers as layers_lib
from jaxviz import weights as weights_lib
from jaxviz.errors import JaxvizError

Transform = Callable[[np.ndarray], np.ndarray]

# torchvision's classifier indices: Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear.
CLASSIFIER_INDEX = {"fc6": 0, "fc7": 3, "fc8": 6}
POOL5_SHAPE = (512, 7, 7)  # (C, H, W) of the tensor torchvision flattens before fc6

IMAGENET_WEIGHTS = {
    "vgg11": "VGG11_Weights", "vgg13": "VGG13_Weights",
    "vgg16": "VGG16_Weights", "vgg19": "VGG19_Weights",
}


def conv_to_hwio(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)


def linear_to_kernel(weight: np.ndarray) -> np.ndarray:
  return weight.T


def fc6_to_kernel(weight: np.ndarray) -> np.ndarray:
  """(4096, 512*7*7) NCHW-flatten rows -> (7*7*512, 4096) NHWC-flatten kernel."""
  out_features = weight.shape[0]
  return weight.reshape(out_features, *POOL5_SHAPE).transpose(2, 3, 1, 0).reshape(
      -1, out_features)


def identity(value: np.ndarray) -> np.ndarray:
  return value


def weight_table(arch: str = layers_lib.DEFAULT_ARCH) -> list[tuple[str, str, Transform]]:
  """(torchvision key, flat Flax key, transform) for every parameter of `arch`."""
  table = []
  for layer in layers_lib.conv_layers(arch):
    table.append((f"features.{layer.index}.weight", f"{layer.name}.kernel", conv_to_hwio))
    table.append((f"features.{layer.index}.bias", f"{layer.name}.bias", identity))
  for name, _, _ in layers_lib.CLASSIFIER:
    index = CLASSIFIER_INDEX[name]
    transform = fc6_to_kernel if name == "fc6" else linear_to_kernel
    table.append((f"classifier.{index}.weight", f"{name}.kernel", transform))
    table.append((f"classifier.{index}.bias", f"{name}.bias", identity))
  return table


def torch_shapes(arch: str = layers_lib.DEFAULT_ARCH) -> dict[str, tuple[int, ...]]:
  """Expected torchvision key -> shape, derived from the Flax shapes."""
  flax_shapes = vgg.param_shapes(arch)
  shapes = {}
  for torch_key, flax_key, _ in weight_table(arch):
    shape = flax_shapes[flax_key]
    if len(shape) == 4:
      shape = (shape[3], shape[2], shape[0], shape[1])
    elif len(shape) == 2:
      shape = (shape[1], shape[0])
    shapes[torch_key] = shape
  return shapes


def detect_arch(state_dict: dict[str, np.ndarray]) -> str | None:
  """The arch whose table matches `state_dict` exactly, if any."""
  found = {key: tuple(value.shape) for key, value in state_dict.items()}
  for arch in layers_lib.ARCH_CONFIGS:
    if mismatch(found, arch) is None:
      return arch
  return None


def mismatch(found: dict[str, tuple[int, ...]], arch: str) -> str | None:
  return weights_lib.mismatch_report(found, torch_shapes(arch))


def state_dict_to_flat(state_dict: dict[str, np.ndarray], arch: str,
                       source: str = "state dict") -> dict[str, np.ndarray]:
  """Strictly checks a torchvision state dict and converts it to flat Flax keys."""
  report = mismatch({key: tuple(value.shape) for key, value in state_dict.items()}, arch)
  if report:
    raise JaxvizError(f"{source} is not a torchvision {arch} state dict: {report}")
  weights_lib.check_finite(state_dict, source)
  return {flax_key: np.ascontiguousarray(transform(np.asarray(state_dict[torch_key],
                                                              np.float32)))
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


def _arch_of(state_dict: dict[str, np.ndarray], arch: str | None, source: str) -> str:
  if arch is not None:
    return layers_lib.check_arch(arch)
  detected = detect_arch(state_dict)
  if detected is None:
    # Report against VGG16, the architecture users almost always mean.
    report = mismatch({k: tuple(v.shape) for k, v in state_dict.items()},
                      layers_lib.DEFAULT_ARCH)
    raise JaxvizError(f"{source} is not a torchvision VGG state dict "
                      f"(compared with {layers_lib.DEFAULT_ARCH}: {report})")
  return detected


def imagenet_categories() -> list[str]:
  """The 1000 ImageNet class names, shipped inside torchvision (no download)."""
  return list(torchvision.models.VGG16_Weights.IMAGENET1K_V1.meta["categories"])


def convert_file(src: str | os.PathLike, dst: str | os.PathLike,
                 arch: str | None = None, source_sha256: str | None = None) -> str:
  """Converts a torchvision `.pth` into a jaxviz `.safetensors`; returns the arch.

  The output is written atomically: a failed conversion leaves no file.
  `source_sha256` is the source's hash if the caller knows it already.
  """
  src = Path(src)
  state_dict = read_pth(src)
  arch = _arch_of(state_dict, arch, str(src))
  flat = state_dict_to_flat(state_dict, arch, str(src))
  weights_lib.save(dst, flat, arch=arch, source=src.name,
                   source_sha256=source_sha256 or fileio.sha256_file(src),
                   categories=imagenet_categories())
  return arch


def imagenet_weights_enum(arch: str):
  return getattr(torchvision.models, IMAGENET_WEIGHTS[layers_lib.check_arch(arch)]).IMAGENET1K_V1


def download_imagenet(arch: str = layers_lib.DEFAULT_ARCH) -> Path:
  """torchvision's own download of the ImageNet `.pth` (its cache and progress bar).

  Returns the path in torchvision's cache (`$TORCH_HOME/hub/checkpoints/`).
  """
  enum = imagenet_weights_enum(arch)
  try:
    enum.get_state_dict(progress=True)
  except (urllib.error.URLError, OSError, ConnectionError) as error:
    reason = getattr(error, "reason", error)
    raise JaxvizError(
        f"cannot download the ImageNet {arch} weights ({reason}); offline, pass "
        "--weights PATH (a torchvision .pth or a converted .safetensors) or "
        "--weights random for a demo") from None
  filename = os.path.basename(enum.url)
  return Path(torch.hub.get_dir()) / "checkpoints" / filename


def download_and_convert(arch: str, dst: str | os.PathLike) -> None:
  """Fetches (or finds in torchvision's cache) the ImageNet weights and converts them."""
  convert_file(download_imagenet(arch), dst, arch)

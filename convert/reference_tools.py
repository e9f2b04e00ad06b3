"""What the torch side of every arch shares: tensor transforms of the weight tables, the
published file's download through the reference's own loader, and reading taps off a
torch model with forward hooks.

Conventions:
  * A weight table row is (torch key, flat Flax key, transform); the transforms
    here take torch's layouts to Flax's: conv (O, I, kh, kw) -> HWIO, linear
    (out, in) -> (in, out), batch norm's leaves renamed (`BN_LEAVES`).
  * Taps are read by hooks that clone what they are given: torchvision's
    in-place ReLUs and adds change a kept tensor after its hook has run
    (`jaxviz_convert.resnet50.storing_hook_reads` shows what a keeping hook holds).
  * Activations come back NHWC numpy, a (N, C) output as (N, 1, 1, C).
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from jaxviz import nets
from jaxviz.errors import JaxvizError

Transform = Callable[[np.ndarray], np.ndarray]
Hook = Callable[..., None]

# BatchNorm2d's state dict names -> the Flax leaves (`jaxviz.nets.blocks.BatchNorm`).
BN_LEAVES = (("weight", "scale"), ("bias", "bias"), ("running_mean", "mean"),
             ("running_var", "var"))


def conv_to_hwio(weight: np.ndarray) -> np.ndarray:
  return weight.transpose(2, 3, 1, 0)


def linear_to_kernel(weight: np.ndarray) -> np.ndarray:
  return weight.T


def identity(value: np.ndarray) -> np.ndarray:
  return value


def batch_norm_rows(torch_path: str, flax_path: str) -> list[tuple[str, str, Transform]]:
  """A BatchNorm2d's four rows: its weight, bias and running statistics."""
  return [(f"{torch_path}.{torch_leaf}", f"{flax_path}.{flax_leaf}", identity)
          for torch_leaf, flax_leaf in BN_LEAVES]


def fetch_published(fetch: Callable[[], object], url: str, what: str, offline: str) -> Path:
  """Runs the reference's own loader (`fetch`: it downloads `url` into torch's hub cache
  with its progress bar, or finds it there) and returns that file.

  Raises:
    JaxvizError: one line naming `what` and the offline choices when it cannot.
  """
  try:
    fetch()
  except (urllib.error.URLError, OSError, ConnectionError) as error:
    reason = getattr(error, "reason", error)
    raise JaxvizError(f"cannot download the {what} weights ({reason}); offline, pass "
                      f"--weights PATH ({offline} or a converted .safetensors) or "
                      "--weights random") from None
  return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def imagenet_normalise(rgb: torch.Tensor) -> torch.Tensor:
  """(N, 3, H, W) rgb in [0, 1] -> what torchvision's models are fed: (rgb - m) / s with
  ImageNet's mean and std."""
  mean = torch.tensor(nets.IMAGENET_MEAN, dtype=rgb.dtype)[:, None, None]
  std = torch.tensor(nets.IMAGENET_STD, dtype=rgb.dtype)[:, None, None]
  return (rgb - mean) / std


def measure_batch_norms(model: torch.nn.Module, bias_mean: float, side: int = 64) -> None:
  """Gives every BatchNorm2d of `model` (float64) weight uniform(0.5, 1.5), bias
  normal(bias_mean, 0.5) and the running statistics of one batch of 8 random images
  (a train-mode forward with momentum None sets them to that batch's); leaves the
  model in eval mode. torch's global generator draws, so seed it first."""
  norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
  with torch.no_grad():
    for norm in norms:
      norm.weight.uniform_(0.5, 1.5)
      norm.bias.normal_(bias_mean, 0.5)
      norm.momentum = None  # a cumulative average: one batch's statistics
    model.train()
    model(imagenet_normalise(torch.rand(8, 3, side, side, dtype=torch.float64)))
  for norm in norms:
    norm.momentum = 0.1
  model.eval()


def cloning_hook(found: dict[str, torch.Tensor], name: str) -> Hook:
  """A forward hook that stores a clone of its module's output as `found[name]`."""
  def hook(module, inputs, output):
    found[name] = output.detach().clone()
  return hook


def run_hooked(model: torch.nn.Module, images_nchw: torch.Tensor,
               hooks: Iterable[tuple[str, Hook]], pre_hooks: Iterable[tuple[str, Hook]] = (),
               stop: type[Exception] | None = None) -> None:
  """One no-grad forward with the (module name, hook) pairs registered, removed after;
  an exception of type `stop` raised by a hook ends the forward quietly."""
  handles = [model.get_submodule(name).register_forward_hook(hook) for name, hook in hooks]
  handles += [model.get_submodule(name).register_forward_pre_hook(hook)
              for name, hook in pre_hooks]
  try:
    with torch.no_grad():
      model(images_nchw)
  except Exception as error:
    if stop is None or not isinstance(error, stop):
      raise
  finally:
    for handle in handles:
      handle.remove()


def nhwc(value: torch.Tensor) -> np.ndarray:
  """(N, C, H, W) or (N, C) -> (N, H, W, C) numpy ((N, 1, 1, C) for the latter)."""
  if value.dim() == 2:
    value = value[:, :, None, None]
  return value.permute(0, 2, 3, 1).numpy()


def hooked_taps(model: torch.nn.Module, images_nchw: torch.Tensor,
                names: Iterable[str]) -> dict[str, np.ndarray]:
  """Each named module's output (cloning hooks), NHWC, in the order the hooks fired."""
  found: dict[str, torch.Tensor] = {}
  run_hooked(model, images_nchw, [(name, cloning_hook(found, name)) for name in names])
  return {name: nhwc(value) for name, value in found.items()}

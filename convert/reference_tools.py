"""What the torch references of every arch share: their input, their batch norms'
statistics, and reading taps off a torch model with forward hooks. Only the tests and
benchmarks use it (the conversion needs no torch).

Conventions:
  * Taps are read by hooks that clone what they are given: torchvision's
    in-place ReLUs and adds change a kept tensor after its hook has run
    (`jaxviz_convert.reference_resnet50.storing_hook_reads` shows what a keeping hook holds).
  * Activations come back NHWC numpy, a (N, C) output as (N, 1, 1, C).
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch

from jaxviz import nets

Hook = Callable[..., None]


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

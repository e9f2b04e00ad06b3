"""lucent's InceptionV1 as the torch reference the tests hold the Flax network to.

Conventions:
  * The reference is lucent's own `InceptionV1` module (torch-lucent), imported
    from its module file: `lucent.modelzoo.inceptionv1.InceptionV1`.
  * Taps are read by forward hooks on lucent's modules, cloned, as lucent's
    `render_vis` hooks them; none is a functional call (see the table).
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from jaxviz.nets import inceptionv1_table as table
from jaxviz_convert import reference_tools as tools


def lucent_module():
  """lucent's module file `lucent.modelzoo.inceptionv1.InceptionV1` (torch-lucent).

  By path: the package `lucent.modelzoo.inceptionv1` star-imports the class
  InceptionV1 over its own module of that name, so `from ... import InceptionV1`
  gives the class."""
  return importlib.import_module("lucent.modelzoo.inceptionv1.InceptionV1")


def reference_model(seed: int = 0, redirected_relu: bool = True) -> torch.nn.Module:
  """lucent's InceptionV1 with seeded random weights, eval mode, float64.

  torch's default init shrinks the signal about threefold per conv, so by mixed4e a
  tap is mostly its bias and barely depends on the input or on the kernels a test
  means to check. The kernels are scaled by sqrt(6) (variance 2 / fan_in, He's),
  which keeps the activations' scale through all 57 convs (measured: std 60 at
  conv2d0, 125 at mixed5b for lucent's input range), and the biases are redrawn
  normal(0, 1) so that a mix-up of any two shows.
  """
  torch.manual_seed(seed)
  model = lucent_module().InceptionV1(pretrained=False, redirected_ReLU=redirected_relu)
  with torch.no_grad():
    for name, parameter in model.named_parameters():
      if name.endswith(".bias"):
        parameter.normal_(0.0, 1.0)
      elif parameter.dim() == 4:
        parameter.mul_(6 ** 0.5)
  return model.eval().double()


class _Stop(Exception):
  """Raised from mixed5b's hook where the logits are undefined (not a 7x7 map)."""


def reference_taps(model: torch.nn.Module, images_nchw: torch.Tensor) -> dict[str, np.ndarray]:
  """Every tap of `table.taps()` as lucent computes it, NHWC numpy (the logits as
  (N, 1, 1, 1008), and only where mixed5b is 7x7: lucent would fail on a smaller map
  and mix positions into the batch on a larger one)."""
  found: dict[str, torch.Tensor] = {}

  def stop_at_mixed5b(module, inputs, output):
    if tuple(output.shape[2:]) != (table.LOGITS_SIDE,) * 2:
      raise _Stop

  names = [layer.name for layer in table.taps()]
  hooks = [(name, tools.cloning_hook(found, name)) for name in names]
  tools.run_hooked(model, images_nchw, hooks + [("mixed5b", stop_at_mixed5b)], stop=_Stop)
  return {name: tools.nhwc(value) for name, value in found.items()}

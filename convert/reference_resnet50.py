"""torchvision's ResNet-50 as the torch reference the tests hold the Flax network to.

Conventions:
  * The reference is `torchvision.models.resnet50()` in eval mode, fed
    ImageNet-normalised input (as jaxviz feeds the Flax network).
  * `reference_taps` reads every tap with cloning hooks, and the named extras
    (`relu1`, `relu2`, `add`) from the three calls of each block's one `relu`
    module; `storing_hook_reads` is what a hook that keeps its tensor reads.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from jaxviz.nets import resnet50_table as table
from jaxviz_convert import reference_tools as tools

WEIGHTS = torchvision.models.ResNet50_Weights.IMAGENET1K_V1
imagenet_normalise = tools.imagenet_normalise  # what torchvision's transforms feed it


def reference_model(seed: int = 0) -> torch.nn.Module:
  """torchvision's ResNet-50 with seeded random weights, eval mode, float64.

  Convs and fc are torchvision's own draw; each batch norm gets weight
  uniform(0.5, 1.5), bias normal(1, 0.5) and running statistics measured on a
  batch of random images (a train-mode forward with momentum None sets them to
  that batch's).

  Why: with fresh statistics (mean 0, var 1) the running statistics would be
  untested and the residual sums grow block by block; measured ones keep each
  batch norm's output at unit scale, so every kernel, statistic and eps shows.
  The bias's mean of 1 has the ReLUs cut a fifth of the units rather than half,
  as in `jaxviz_convert.reference_googlenet.reference_model`: with mean 0, float32's own
  error grows along the 53 batch norms to 4.5e-5 of a tap's maximum at layer4
  (torch's float32 forward against its float64, measured: seed 0, 64 px), with
  mean 1 it stays at 4.6e-6, so the float32 comparison can hold jaxviz to 1e-5.
  """
  torch.manual_seed(seed)
  model = torchvision.models.resnet50().double()
  tools.measure_batch_norms(model, bias_mean=1.0)
  return model


def _hook_names() -> list[str]:
  """The taps that are torch modules (the table's names less the named extras)."""
  extras = (".relu1", ".relu2", ".add")
  return [layer.name for layer in table.taps() if not layer.name.endswith(extras)]


def reference_taps(model: torch.nn.Module, images_nchw: torch.Tensor) -> dict[str, np.ndarray]:
  """Every tap of `table.taps()` as torchvision computes it, NHWC numpy (the logits as
  (N, 1, 1, 1000)), in the order the values were made.

  Each hook clones (the in-place add and ReLU would change a kept tensor); a block's
  `relu1`, `relu2` are the first two calls of its `relu` module and `add` is the
  third call's input.
  """
  found: dict[str, torch.Tensor] = {}
  calls: dict[str, int] = {}

  def relu_input(block: str):
    def hook(module, inputs):
      if calls.get(block, 0) == 2:
        found[f"{block}.add"] = inputs[0].detach().clone()
    return hook

  def relu_output(block: str):
    def hook(module, inputs, output):
      calls[block] = calls.get(block, 0) + 1
      if calls[block] <= 2:
        found[f"{block}.relu{calls[block]}"] = output.detach().clone()
    return hook

  hooks = [(name, tools.cloning_hook(found, name)) for name in _hook_names()]
  hooks += [(f"{block.path}.relu", relu_output(block.path)) for block in table.blocks()]
  pre_hooks = [(f"{block.path}.relu", relu_input(block.path)) for block in table.blocks()]
  tools.run_hooked(model, images_nchw, hooks, pre_hooks)
  return {name: tools.nhwc(value) for name, value in found.items()}


def storing_hook_reads(model: torch.nn.Module, images_nchw: torch.Tensor,
                       module: str) -> np.ndarray:
  """What a forward hook on `module` that keeps its output tensor, uncloned (lucent's
  `ModuleHook`), holds once the forward has run: later in-place ops show in it, and
  a module called more than once leaves its last call's output."""
  kept = {}
  tools.run_hooked(model, images_nchw,
                   [(module, lambda mod, inputs, output: kept.__setitem__("output", output))])
  return tools.nhwc(kept["output"])

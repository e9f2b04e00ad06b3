"""torchvision's GoogLeNet as the torch reference the tests hold the Flax network to.

Conventions:
  * The reference is torchvision's `GoogLeNet(transform_input=True,
    aux_logits=False)`: the network `googlenet(weights=IMAGENET1K_V1)` returns
    (it loads the file with its auxiliary heads, then sets them to None). It
    takes ImageNet-normalised input; jaxviz feeds the Flax network
    (rgb - 0.5) / 0.5, which is what `_transform_input` makes of it.
  * Taps are read by forward hooks on torchvision's modules that clone the
    output: BasicConv2d's ReLU is in place, and overwrites what a hook on `.bn`
    was given.
"""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from jaxviz.nets import googlenet_table as table
from jaxviz_convert import reference_tools as tools

WEIGHTS = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
imagenet_normalise = tools.imagenet_normalise  # what torchvision's transforms feed it


def reference_model(seed: int = 0) -> torch.nn.Module:
  """torchvision's GoogLeNet with seeded random weights, eval mode, float64.

  Convs and fc are torchvision's own `init_weights=True` draw (normal(0, 0.01), fc
  bias uniform +-1/32); each batch norm gets weight uniform(0.5, 1.5), bias
  normal(1, 0.5) and running statistics measured on a batch of random images (a
  train-mode forward with momentum None sets them to that batch's).

  Why: with fresh statistics (mean 0, var 1) the 0.01 kernels shrink the signal six-
  to eightfold per conv (measured: std 2e-12 at inception5b), so deep taps would not
  depend on the input or the kernels. Measured statistics keep every batch norm's
  output at unit scale, so each kernel, statistic and eps shows (the conv outputs'
  variance, medians 2e-3 to 5e-2, is of the order of eps = 1e-3). The bias's mean of
  1 has the ReLUs cut about a fifth of the units rather than half: at half, the ReLU
  passes a perturbation to half the units but keeps only a third of the signal's
  variance (the rest is its output's mean, which the next batch norm removes), so
  errors grow about 1.2x per conv, and float32's own error at inception5b is 2.5-3x
  larger (measured with torch's float32 forward: 2.6-2.9e-5 of the tap's maximum
  against 0.7-1.1e-5).
  """
  torch.manual_seed(seed)
  model = torchvision.models.GoogLeNet(transform_input=True, aux_logits=False,
                                       init_weights=True).double()
  tools.measure_batch_norms(model, bias_mean=1.0)
  return model


def reference_taps(model: torch.nn.Module, images_nchw: torch.Tensor) -> dict[str, np.ndarray]:
  """Every tap of `table.taps()` as torchvision computes it, NHWC numpy (the logits as
  (N, 1, 1, 1000)), in the order the hooks fired.

  `images_nchw`: ImageNet-normalised, as the reference is fed (its own
  `transform_input` re-maps it). Each hook clones its output: BasicConv2d's
  in-place ReLU would otherwise turn a stored `.bn` output into the ReLU's.
  """
  return tools.hooked_taps(model, images_nchw, [layer.name for layer in table.taps()])

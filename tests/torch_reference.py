"""SPEC §2 and §3 written plainly in PyTorch: the live reference jaxviz is checked against.

Layers are read the write-up's way, not re-implemented: a forward hook on
`model.features[L]` of an unmodified torchvision VGG stores the module's
output while the network runs, and torchvision's `ReLU(inplace=True)` then
overwrites that stored tensor, so a conv layer is read after its ReLU. The
write-up ran the whole network; this runs `features` up to the module after
L, the in-place ReLU included, since no later module can touch the stored
tensor (and the classifier in float64 would dominate the tests' time).
`pre_relu=True` stores a copy instead, the raw conv output. Eager, one map at a
time, torch's own Adam(weight_decay=...), F.interpolate bicubic (= cv2
INTER_CUBIC) and a reflect-padded average pool (= cv2.blur).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jaxviz.optvis.recipes import Schedule

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class HookedLayer:
  """`model.features[layer_index]`'s output as the write-up's SaveFeatures hook keeps it."""

  def __init__(self, model: torch.nn.Module, layer_index: int, pre_relu: bool = False):
    self.network = model.features[: layer_index + 2]
    self.stored = None
    keep = (lambda output: output.clone()) if pre_relu else (lambda output: output)
    self._handle = model.features[layer_index].register_forward_hook(
        lambda module, inputs, output: setattr(self, "stored", keep(output)))

  def __call__(self, x: torch.Tensor) -> torch.Tensor:
    """Runs the network on NCHW normalised `x`; returns the stored activation."""
    self.network(x)
    return self.stored

  def remove(self) -> None:
    self._handle.remove()


def normalise(image: torch.Tensor) -> torch.Tensor:
  mean = torch.tensor(MEAN, dtype=image.dtype)[:, None, None]
  std = torch.tensor(STD, dtype=image.dtype)[:, None, None]
  return (image - mean) / std


def denormalise(image: torch.Tensor) -> torch.Tensor:
  mean = torch.tensor(MEAN, dtype=image.dtype)[:, None, None]
  std = torch.tensor(STD, dtype=image.dtype)[:, None, None]
  return image * std + mean


def render_map(model: torch.nn.Module, layer_index: int, map_index: int, start: np.ndarray,
               schedule: Schedule, pre_relu: bool = False,
               dtype=torch.float64) -> tuple[np.ndarray, list[float]]:
  """start: (size0, size0, 3) in [0, 1] -> (final image (S, S, 3), objective per scale)."""
  model = model.to(dtype)
  layer = HookedLayer(model, layer_index, pre_relu)
  image = torch.from_numpy(np.array(start)).to(dtype).permute(2, 0, 1)[None]
  sides = schedule.sides()
  objectives = []
  try:
    for scale, side in enumerate(sides):
      x = normalise(image).detach().requires_grad_(True)
      adam = torch.optim.Adam([x], lr=schedule.lr, betas=(0.9, 0.999), eps=1e-8,
                              weight_decay=schedule.weight_decay)
      for _ in range(schedule.steps_at(scale)):
        adam.zero_grad()
        loss = -layer(x)[0, map_index].mean()
        loss.backward()
        adam.step()
      with torch.no_grad():
        objectives.append(float(layer(x)[0, map_index].mean()))
        image = denormalise(x.detach())
        if scale + 1 < len(sides):
          new_side = sides[scale + 1]
          image = F.interpolate(image, size=(new_side, new_side), mode="bicubic",
                                align_corners=False)
          pad = schedule.blur // 2
          image = F.avg_pool2d(F.pad(image, (pad, pad, pad, pad), mode="reflect"),
                               schedule.blur, stride=1)
  finally:
    layer.remove()
  final = image.clamp(0, 1)[0].permute(1, 2, 0).numpy()
  return final, objectives


def channel_means(model: torch.nn.Module, photo: np.ndarray, layer_index: int,
                  pre_relu: bool = False) -> np.ndarray:
  """SPEC §3 in torch (float64): bicubic to 224, normalise, run, each channel's mean."""
  x = torch.from_numpy(photo.astype(np.float64)).permute(2, 0, 1)[None]
  x = F.interpolate(x, size=(224, 224), mode="bicubic", align_corners=False)
  layer = HookedLayer(model.double(), layer_index, pre_relu)
  try:
    with torch.no_grad():
      activation = layer(normalise(x))
  finally:
    layer.remove()
  return activation.mean(dim=(2, 3))[0].numpy()

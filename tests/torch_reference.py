"""SPEC §2 written plainly in PyTorch: the live reference the JAX engine is checked against.

Eager, one map at a time, torch's own Adam(weight_decay=...), F.interpolate
bicubic (= cv2 INTER_CUBIC) and a reflect-padded average pool (= cv2.blur).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from jaxviz.engine import Schedule

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def truncated_features(model: torch.nn.Module, layer_index: int) -> torch.nn.Module:
  return model.features[: layer_index + 1]


def render_map(features: torch.nn.Module, map_index: int, start: np.ndarray,
               schedule: Schedule, dtype=torch.float64) -> tuple[np.ndarray, list[float]]:
  """start: (size0, size0, 3) in [0, 1] -> (final image (S, S, 3), objective per scale)."""
  features = features.to(dtype)
  mean = torch.tensor(MEAN, dtype=dtype)[:, None, None]
  std = torch.tensor(STD, dtype=dtype)[:, None, None]
  image = torch.from_numpy(np.array(start)).to(dtype).permute(2, 0, 1)[None]
  sides = schedule.sides()
  objectives = []
  for scale, side in enumerate(sides):
    x = ((image - mean) / std).detach().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=schedule.lr, betas=(0.9, 0.999), eps=1e-8,
                            weight_decay=schedule.weight_decay)
    for _ in range(schedule.steps_at(scale)):
      adam.zero_grad()
      loss = -features(x)[0, map_index].mean()
      loss.backward()
      adam.step()
    with torch.no_grad():
      objectives.append(float(features(x)[0, map_index].mean()))
      image = x.detach() * std + mean
      if scale + 1 < len(sides):
        new_side = sides[scale + 1]
        image = F.interpolate(image, size=(new_side, new_side), mode="bicubic",
                              align_corners=False)
        pad = schedule.blur // 2
        image = F.avg_pool2d(F.pad(image, (pad, pad, pad, pad), mode="reflect"), schedule.blur,
                             stride=1)
  final = image.clamp(0, 1)[0].permute(1, 2, 0).numpy()
  return final, objectives

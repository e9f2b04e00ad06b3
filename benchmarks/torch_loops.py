"""SPEC §2 in eager PyTorch: the write-up's loop, and the same loop truncated at the layer.

Torch only (no JAX), so that a process running it (benchmarks/bench_commands.py)
pays for nothing else: the schedule comes spelt out as a `Plan`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Plan:
  """A schedule spelt out: each scale's side and steps, and the step's settings.
  Made from a `jaxviz.optvis.recipes.Schedule` by the caller (`Plan.of`), so that the
  schedule's rules live in one place and this process needs no jaxviz."""

  sides: tuple[int, ...]
  steps: tuple[int, ...]
  lr: float
  weight_decay: float
  blur: int

  @classmethod
  def of(cls, schedule) -> "Plan":
    sides = tuple(schedule.sides())
    return cls(sides, tuple(schedule.steps_at(i) for i in range(len(sides))), schedule.lr,
               schedule.weight_decay, schedule.blur)


def torch_loop(model: torch.nn.Module, layer_index: int, read_index: int, map_index: int,
               start: np.ndarray, plan: Plan, whole_network: bool) -> np.ndarray:
  """SPEC §2 in eager PyTorch for one map; the write-up's loop when whole_network.

  The write-up's hook on features[L] reads a conv layer after its in-place
  ReLU; the truncated loop runs up to that ReLU, so both maximise the same thing.
  """
  device = next(model.parameters()).device
  mean = torch.tensor(MEAN, device=device)[:, None, None]
  std = torch.tensor(STD, device=device)[:, None, None]
  saved = {}
  if whole_network:
    hook = model.features[layer_index].register_forward_hook(
        lambda module, inputs, output: saved.__setitem__("activation", output))
    forward = model
  else:
    forward = model.features[: read_index + 1]
  image = torch.from_numpy(np.array(start)).permute(2, 0, 1)[None].to(device)
  sides = plan.sides
  for scale in range(len(sides)):
    x = ((image - mean) / std).detach().requires_grad_(True)
    adam = torch.optim.Adam([x], lr=plan.lr, weight_decay=plan.weight_decay)
    for _ in range(plan.steps[scale]):
      adam.zero_grad()
      output = forward(x)
      activation = saved["activation"] if whole_network else output
      loss = -activation[0, map_index].mean()
      loss.backward()
      adam.step()
    with torch.no_grad():
      image = x.detach() * std + mean
      if scale + 1 < len(sides):
        image = F.interpolate(image, size=(sides[scale + 1],) * 2, mode="bicubic",
                              align_corners=False)
        pad = plan.blur // 2
        image = F.avg_pool2d(F.pad(image, (pad,) * 4, mode="reflect"), plan.blur, stride=1)
  if whole_network:
    hook.remove()
  return image.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()

"""One forward + input-gradient step, XLA against PyTorch on the same machine.

The render loop is this step repeated, so this isolates the frameworks' conv
speed from everything else. Objective: the mean of one channel of the layer
(jaxviz's single-channel path for XLA; the full layer and a slice for torch, as
the write-up's code does).

  python benchmarks/bench_step.py                       # conv5_1, 224 px, batch 1 and 8
  python benchmarks/bench_step.py --layer 10 --side 56
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

import jaxviz_convert.torch_weights as torch_weights
from jaxviz import app, vgg, weights as weights_lib
from jaxviz.optvis import render
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target


def best_of(function, repeats: int) -> float:
  """Seconds per call: the best of `repeats` timed calls, after a warm-up call."""
  function()
  times = []
  for _ in range(repeats):
    began = time.perf_counter()
    function()
    times.append(time.perf_counter() - began)
  return min(times)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", default="conv5_1")
  parser.add_argument("--side", type=int, default=224)
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  target = resolve_target(args.layer)
  layer = target.read
  torch.manual_seed(0)
  model = torchvision.models.vgg16().eval()
  features = model.features[: layer.index + 1]
  for parameter in features.parameters():
    parameter.requires_grad_(False)
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  params = jax.device_put(vgg.truncate_params(
      weights_lib.nest(torch_weights.state_dict_to_flat(state_dict, "vgg16")), layer))
  print(f"{target.describe()}, {args.side} px, forward + input gradient; "
        f"jax {jax.__version__} on {jax.devices()[0].platform}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)")

  for batch in (int(b) for b in args.batches.split(",")):
    images = np.random.default_rng(0).normal(size=(batch, args.side, args.side, 3)).astype(
        np.float32)
    maps = jnp.arange(batch) % layer.channels
    recipe = app.layer_recipe(target, Schedule(size0=args.side, scales=1))
    objective = jax.vmap(functools.partial(render.objective_value, recipe, target.model),
                         in_axes=(None, 0, 0))
    step = jax.jit(jax.grad(lambda p, x, m: objective(p, x, m).sum(), argnums=1))
    x_jax = jnp.asarray(images)[:, None]  # one image per map
    xla = best_of(lambda: step(params, x_jax, maps).block_until_ready(), args.repeats)

    x_torch = torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    channels = torch.arange(batch) % layer.channels

    def torch_step():
      x_torch.grad = None
      out = features(x_torch)
      out[torch.arange(batch), channels].mean(dim=(1, 2)).sum().backward()

    eager = best_of(torch_step, args.repeats)
    print(f"batch {batch}: XLA {xla * 1e3:7.1f} ms ({xla / batch * 1e3:6.1f} ms/image), "
          f"PyTorch {eager * 1e3:7.1f} ms ({eager / batch * 1e3:6.1f} ms/image), "
          f"XLA/PyTorch time {xla / eager:.2f}")


if __name__ == "__main__":
  main()

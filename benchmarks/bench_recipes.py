"""The lucid recipe: jaxviz against lucent at lucent's best, same maps, same steps.

lucent renders several maps at once as one batched image with one objective per
batch index (`channel(layer, n, batch=b)`, summed), on a network truncated after
the layer's ReLU (as jaxviz runs it); jaxviz runs its `--recipe lucid` as the
CLI does (vmapped batches, one pinned worker process per core on CPU, the
default driver). Both in float32, both with lucid's standard transforms, 128 px
images upsampled to 224 px for the network. Prints maps/s and the ratio.

  python benchmarks/bench_recipes.py                       # CPU: layer 10, 8 maps, 32 steps
  python benchmarks/bench_recipes.py --layer 24 --maps 64 --steps 512   # a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import jax
import torch
import torchvision

import jaxviz_convert.torch_weights as torch_weights
from jaxviz import app, execution, weights as weights_lib, xla_cache
from jaxviz.optvis import recipes
from jaxviz.vgg import resolve_target


def lucent_render(model, layer_index: int, maps: list[int], steps: int, size: int) -> float:
  """Seconds for lucent's render_vis of `maps` as one batch of len(maps) images."""
  from lucent.optvis import objectives, param, render

  objective = sum(objectives.channel(str(layer_index), map_index, batch=b)
                  for b, map_index in enumerate(maps))
  began = time.perf_counter()
  render.render_vis(model, objective, param_f=lambda: param.image(size, batch=len(maps)),
                    thresholds=(steps,), show_image=False, progress=False)
  if torch.cuda.is_available():
    torch.cuda.synchronize()
  return time.perf_counter() - began


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", default="10")
  parser.add_argument("--maps", type=int, default=8)
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--json", type=Path, help="also write the figures here")
  args = parser.parse_args()

  target = resolve_target(args.layer)
  settings = recipes.Lucid(size0=args.size, steps=args.steps)
  recipe = app.layer_recipe(target, settings)
  torch.manual_seed(0)
  model = torchvision.models.vgg16().eval()
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
  params = weights_lib.nest(torch_weights.state_dict_to_flat(state_dict, "vgg16"))
  maps = list(range(args.maps))
  device = "cuda" if torch.cuda.is_available() else "cpu"
  network = model.features[: target.read.index + 1].to(device)
  for parameter in network.parameters():
    parameter.requires_grad_(False)
  print(f"machine: {os.cpu_count()} CPUs, jax {jax.__version__} on {jax.devices()[0].platform}"
        f", torch {torch.__version__} ({torch.get_num_threads()} threads, {device})")
  print(f"settings: {target.describe()}, {len(maps)} maps, {args.size} px images (224 px to "
        f"the network), {args.steps} steps, lucid's standard transforms, float32")

  figures: dict[str, float] = {}
  lucent_render(network, target.layer.index, maps[:2], 2, args.size)  # warm-up
  seconds = lucent_render(network, target.layer.index, maps, args.steps, args.size)
  figures["lucent_maps_per_s"] = len(maps) / seconds
  print(f"lucent, one batch of {len(maps)}: {seconds:7.1f} s = "
        f"{figures['lucent_maps_per_s']:.3f} maps/s")

  mesh, workers = execution.local_execution()
  batch = execution.auto_batch(recipe, target.model, params)
  key = jax.random.key(0)
  with tempfile.TemporaryDirectory() as cache:
    xla_cache.use(cache)
    warmup = app.layer_recipe(target, recipes.Lucid(size0=args.size, steps=1))
    began = time.perf_counter()
    list(execution.iter_render(warmup, target.model, params, maps[:batch * workers], key,
                               batch=batch, mesh=mesh, workers=workers))
    figures["jaxviz_first_call_s"] = time.perf_counter() - began
    began = time.perf_counter()
    list(execution.iter_render(recipe, target.model, params, maps, key, batch=batch, mesh=mesh,
                               workers=workers))
    seconds = time.perf_counter() - began
  figures["jaxviz_maps_per_s"] = len(maps) / seconds
  figures["speedup_vs_lucent"] = figures["jaxviz_maps_per_s"] / figures["lucent_maps_per_s"]
  print(f"jaxviz, batch {batch}, {workers} worker(s): {seconds:7.1f} s = "
        f"{figures['jaxviz_maps_per_s']:.3f} maps/s (first call, compiling: "
        f"{figures['jaxviz_first_call_s']:.1f} s)")
  print(f"jaxviz / lucent: {figures['speedup_vs_lucent']:.2f}x")
  if args.json:
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
  main()

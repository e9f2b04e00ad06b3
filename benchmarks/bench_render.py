"""jaxviz against the write-up's PyTorch loop: same machine, same maps, same settings.

Runs, in one invocation:
  (a)  the write-up's loop as its users ran it: eager PyTorch, one map after
       another, the whole VGG16 forward every step with a hook on layer L;
  (a') the same loop with the network truncated after the module it reads (a
       stronger anchor): layer L's ReLU for a conv layer, as SPEC §1 reads it;
  (b)  jaxviz's engine on the same maps (vmapped batches, default driver, one
       worker process per core on CPU, persistent compilation cache as the
       CLI uses it; worker start-up is inside the timing);
and prints maps/s, the ratios, achieved FLOP/s (XLA's cost analysis of one
step at each scale's side) and jaxviz's cold-compile and warm-start times.

  python benchmarks/bench_render.py                      # CPU defaults: layer 10, 32 maps
  python benchmarks/bench_render.py --maps 512 --layer 24 --size0 56 --scales 12 --steps 75

Weights are torchvision's seeded random VGG16 for both sides (timings do not
depend on trained values); every side starts from the same noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torchvision

import jaxviz_convert.torch_weights as torch_weights
from jaxviz import app, execution, weights as weights_lib, xla_cache
from jaxviz.optvis import render
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target

from flops import step_flops
from torch_loops import Plan, torch_loop

def time_cli_start(weights_file: Path, layer: int, cache_dir: Path) -> float:
  """Wall time of a one-step `jaxviz render` in a fresh process with this XLA cache."""
  with tempfile.TemporaryDirectory() as out:
    command = [sys.executable, "-m", "jaxviz.cli", "render", "--layer", str(layer), "--maps",
               "0", "--weights", str(weights_file), "--out", out, "--scales", "1", "--steps",
               "1"]
    began = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True,
                   env={**os.environ, weights_lib.CACHE_ENV: str(cache_dir)})
    return time.perf_counter() - began


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", default="10")
  parser.add_argument("--maps", type=int, default=32)
  parser.add_argument("--size0", type=int, default=56)
  parser.add_argument("--scales", type=int, default=4)
  parser.add_argument("--steps", type=int, default=25)
  parser.add_argument("--batch", default="auto",
                      help="jaxviz batch sizes to time, comma-separated ('auto': execution.auto_batch)")
  parser.add_argument("--torch-maps", type=int, default=0,
                      help="maps for the PyTorch loops (0: same as --maps); fewer on GPU")
  parser.add_argument("--skip-whole-network", action="store_true")
  parser.add_argument("--json", type=Path, help="also write the figures here")
  args = parser.parse_args()

  schedule = Schedule(size0=args.size0, scales=args.scales, steps=args.steps)
  target = resolve_target(args.layer)
  recipe = app.layer_recipe(target, schedule)
  torch.manual_seed(0)
  model = torchvision.models.vgg16().eval()
  for parameter in model.parameters():
    parameter.requires_grad_(False)
  state_dict = {k: v.numpy() for k, v in model.state_dict().items()}  # before .to(cuda)
  params = weights_lib.nest(torch_weights.state_dict_to_flat(state_dict, "vgg16"))
  maps = list(range(args.maps))
  torch_maps = maps[: args.torch_maps or args.maps]
  key = jax.random.key(0)
  starts = np.asarray(jax.vmap(lambda unit: recipe.param.noise(
      render.map_keys(key, unit)[0], schedule.size0, 1, jnp.float32)[0])(jnp.asarray(maps)))
  device = jax.devices()[0]
  print(f"machine: {os.cpu_count()} CPUs, jax {jax.__version__} on {device.platform} "
        f"({device.device_kind}), torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads")
  print(f"settings: {target.describe()}, {len(maps)} maps, "
        f"sides {schedule.sides()}, {schedule.total_steps()} steps per map")

  figures: dict[str, float] = {}
  truncated_params = jax.tree.map(jnp.asarray, target.model.prune(params,
                                                                  recipe.objective.layers()))
  flops_per_map = sum(steps * step_flops(truncated_params, recipe, target.model, side)
                      for steps, side in zip(recipe.steps, recipe.sides))
  figures["gflop_per_map"] = flops_per_map / 1e9

  torch_device = "cuda" if torch.cuda.is_available() else "cpu"
  model.to(torch_device)

  def run_torch(name: str, whole: bool) -> None:
    began = time.perf_counter()
    for map_index in torch_maps:
      torch_loop(model, target.layer.index, target.read.index, map_index, starts[map_index],
                 Plan.of(schedule), whole)
    if torch_device == "cuda":
      torch.cuda.synchronize()
    seconds = time.perf_counter() - began
    figures[f"{name}_maps_per_s"] = len(torch_maps) / seconds
    figures[f"{name}_gflop_per_s"] = flops_per_map * len(torch_maps) / seconds / 1e9
    print(f"{name:>22}: {len(torch_maps)} maps in {seconds:7.1f} s = "
          f"{figures[f'{name}_maps_per_s']:.3f} maps/s ({torch_device}), "
          f"{figures[f'{name}_gflop_per_s']:.0f} GFLOP/s useful")

  if not args.skip_whole_network:
    run_torch("torch_writeup_loop", True)
  run_torch("torch_truncated_loop", False)

  best = 0.0
  mesh, workers = execution.local_execution()
  # As the CLI runs: a persistent cache, here a fresh one, which the warm-up
  # call fills and the timed call's worker processes load from.
  cache_dir = tempfile.TemporaryDirectory()
  xla_cache.use(cache_dir.name)
  warmup = app.layer_recipe(target, Schedule(size0=schedule.size0, scales=schedule.scales,
                                             steps=1))
  for text in args.batch.split(","):
    batch = (execution.auto_batch(recipe, target.model, params) if text == "auto"
             else int(text))
    began = time.perf_counter()
    list(execution.iter_render(warmup, target.model, params, maps[:batch * workers], key,
                               batch=batch, mesh=mesh, workers=workers))
    compile_seconds = time.perf_counter() - began
    began = time.perf_counter()
    results = list(execution.iter_render(recipe, target.model, params, maps, key,
                                         batch=batch, mesh=mesh, workers=workers))
    seconds = time.perf_counter() - began
    assert sum(len(r.maps) for r in results) == len(maps)
    rate = len(maps) / seconds
    name = f"jaxviz_batch{batch}" + ("_auto" if text == "auto" else "")
    figures[f"{name}_maps_per_s"] = rate
    figures[f"{name}_gflop_per_s"] = flops_per_map * rate / 1e9
    figures[f"{name}_first_call_s"] = compile_seconds
    print(f"{name:>22}: {len(maps)} maps in {seconds:7.1f} s = {rate:.3f} maps/s (driver "
          f"{render.resolve_driver('auto')}, {workers} workers), "
          f"{flops_per_map * rate / 1e9:.0f} GFLOP/s; "
          f"first call (compiles) {compile_seconds:.1f} s")
    best = max(best, rate)
  figures["jaxviz_maps_per_s"] = best
  cache_dir.cleanup()

  for name in ("torch_writeup_loop", "torch_truncated_loop"):
    if f"{name}_maps_per_s" in figures:
      ratio = figures["jaxviz_maps_per_s"] / figures[f"{name}_maps_per_s"]
      figures[f"speedup_vs_{name}"] = ratio
      print(f"jaxviz (best batch) / {name}: {ratio:.2f}x")

  with tempfile.TemporaryDirectory() as scratch:
    weights_file = Path(scratch) / "vgg16.safetensors"
    weights_lib.save(weights_file, weights_lib.flatten(params), arch="vgg16", source="random",
                     source_sha256="-", categories=None)
    cache = Path(scratch) / "cache"
    figures["cli_cold_s"] = time_cli_start(weights_file, target.layer.index, cache)
    figures["cli_warm_s"] = time_cli_start(weights_file, target.layer.index, cache)
  print(f"jaxviz render, 1 map x 1 step, new process: cold (empty XLA cache) "
        f"{figures['cli_cold_s']:.1f} s, warm (persistent cache) {figures['cli_warm_s']:.1f} s")
  if args.json:
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
  main()

"""A whole layer at the write-up's defaults on one accelerator: time, FLOP/s, share of peak.

Renders a batch of maps of one layer with the write-up's schedule (SPEC §2: 12
scales, 56 to 408 px, 1010 steps), in one process on the default device, the
way `jaxviz sweep` runs on a GPU (vmapped batch, scan driver). The first run
includes compiling every scale's program; the second, with other maps, is the
steady state. The layer's time is extrapolated from it to all its maps, and
the useful FLOP (XLA's cost analysis of one map's step at each side, times the
steps) give FLOP/s and the fraction of `--peak-tflops`.

  python benchmarks/bench_layer.py --layer 24 --maps 32 --json out.json   # a GPU
  python benchmarks/bench_layer.py --layer 2 --maps 2 --size0 16 --scales 2 --steps 2  # dry run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from jaxviz import app, execution, weights as weights_lib
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target

from flops import step_flops

# Dense peaks, TFLOP/s, of the float32 arithmetic "default" precision uses on each
# device (TF32 tensor cores on NVIDIA, as XLA uses them), from the vendors' sheets.
PEAK_TFLOPS = {"H200": 494.7, "H100": 494.7, "A100": 156.0}


def peak_of(device_kind: str) -> float | None:
  return next((peak for name, peak in PEAK_TFLOPS.items() if name in device_kind), None)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", default="24")
  parser.add_argument("--maps", type=int, default=32, help="maps per batch (one batch)")
  parser.add_argument("--size0", type=int, default=Schedule.size0)
  parser.add_argument("--scales", type=int, default=Schedule.scales)
  parser.add_argument("--steps", type=int, default=Schedule.steps)
  parser.add_argument("--peak-tflops", type=float, default=None,
                      help="the device's peak; default from its kind (PEAK_TFLOPS)")
  parser.add_argument("--json", type=Path)
  args = parser.parse_args()

  target = resolve_target(args.layer)
  schedule = Schedule(size0=args.size0, scales=args.scales, steps=args.steps)
  recipe = app.layer_recipe(target, schedule)
  params = weights_lib.random_weights(0).params
  device = jax.devices()[0]
  peak = args.peak_tflops or peak_of(device.device_kind)
  key = jax.random.key(0)
  placed = execution.prepare_params(recipe, target.model, params, "float32")

  def run(first_map: int) -> float:
    began = time.perf_counter()
    maps = list(range(first_map, first_map + args.maps))
    for _ in execution.iter_render(recipe, target.model, placed, maps, key, batch=args.maps):
      pass
    return time.perf_counter() - began

  cold = run(0)
  warm = run(args.maps)
  useful = sum(recipe.steps[i] * step_flops(placed, recipe, target.model, side)
               for i, side in enumerate(recipe.sides))
  channels = target.layer.channels
  figures = {
      "device": f"{device.platform}: {device.device_kind}", "jax": jax.__version__,
      "layer": target.layer.index, "maps_per_batch": args.maps,
      "sides": list(recipe.sides), "steps_per_map": recipe.total_steps(),
      "first_batch_s": cold, "batch_s": warm, "s_per_map": warm / args.maps,
      "layer_maps": channels, "layer_estimate_s": warm / args.maps * channels,
      "useful_tflop_per_map": useful / 1e12,
      "useful_tflops": useful * args.maps / warm / 1e12,
      "peak_tflops": peak,
  }
  if peak:
    figures["fraction_of_peak"] = figures["useful_tflops"] / peak
  print(f"{figures['device']}, layer {figures['layer']} ({target.layer.name}), "
        f"{args.maps} maps per batch, sides {recipe.sides[0]}..{recipe.sides[-1]}, "
        f"{recipe.total_steps()} steps")
  print(f"first batch (compiling) {cold:.1f} s; steady batch {warm:.1f} s = "
        f"{figures['s_per_map']:.2f} s per map; all {channels} maps ≈ "
        f"{figures['layer_estimate_s'] / 60:.1f} min")
  print(f"useful {figures['useful_tflop_per_map']:.2f} TFLOP per map, "
        f"{figures['useful_tflops']:.1f} TFLOP/s"
        + (f" = {figures['fraction_of_peak']:.1%} of {peak} TFLOP/s" if peak else ""))
  if args.json:
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
  main()

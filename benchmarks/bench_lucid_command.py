"""The lucid recipe as a user runs it: `jaxviz render --recipe lucid` against a script
that calls lucent's `render_vis`, each a whole process, same maps, same steps.

Measured in one run, one after the other:
  * cold: jaxviz with an empty compilation cache (a first run), and lucent;
  * warm: jaxviz again (its programs now cached), and lucent again;
  * steady: each side's time per step once running (compile excluded on both
    sides): the difference of two in-process renders of different lengths.
Both render the maps together (jaxviz: one pinned worker process per core on CPU;
lucent: one batch, torch's threads), in float32, 128 px images upsampled to
224 px, lucid's standard transforms, lucent's network truncated after the layer's
ReLU (as jaxviz reads it) with its parameters frozen (lucent at its best).

  python benchmarks/bench_lucid_command.py --json benchmarks/results/cpu_lucid_command.json
  python benchmarks/bench_lucid_command.py --steps 16 --maps 2     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
import torchvision

import jaxviz_convert.torch_weights as torch_weights

LUCENT_SCRIPT = textwrap.dedent("""
    import sys, torch, torchvision
    from lucent.optvis import objectives, param, render
    layer, maps, steps = int(sys.argv[1]), [int(m) for m in sys.argv[2].split(",")], int(sys.argv[3])
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    network = model.features[: layer + 2]
    for parameter in network.parameters():
      parameter.requires_grad_(False)
    objective = sum(objectives.channel(str(layer), m, batch=b) for b, m in enumerate(maps))
    render.render_vis(network, objective, param_f=lambda: param.image(128, batch=len(maps)),
                      thresholds=(steps,), show_image=False, progress=False)
""")

STEADY_SCRIPT = textwrap.dedent("""
    import sys, time, jax, torch, torchvision
    from lucent.optvis import objectives, param, render as lucent_render
    from jaxviz import app, execution, weights
    from jaxviz.optvis import recipes
    from jaxviz.vgg import resolve_target
    layer, maps, short, long = sys.argv[1], [int(m) for m in sys.argv[2].split(",")], int(sys.argv[3]), int(sys.argv[4])
    target = resolve_target(layer)
    params = weights.load_safetensors(sys.argv[5]).params
    mesh, workers = execution.local_execution()
    def jaxviz_seconds(steps):
      recipe = app.layer_recipe(target, recipes.Lucid(steps=steps))
      began = time.perf_counter()
      list(execution.iter_render(recipe, target.model, params, maps, jax.random.key(0), batch=1,
                                 mesh=mesh, workers=workers))
      return time.perf_counter() - began
    jaxviz_seconds(2)  # compiles (and fills the cache the workers read)
    jaxviz = (jaxviz_seconds(long) - jaxviz_seconds(short)) / (long - short)
    torch.manual_seed(0)
    network = torchvision.models.vgg16().eval().features[: target.read.index + 1]
    for parameter in network.parameters():
      parameter.requires_grad_(False)
    objective = sum(objectives.channel(str(target.layer.index), m, batch=b) for b, m in enumerate(maps))
    def lucent_seconds(steps):
      began = time.perf_counter()
      lucent_render.render_vis(network, objective, param_f=lambda: param.image(128, batch=len(maps)),
                               thresholds=(steps,), show_image=False, progress=False)
      return time.perf_counter() - began
    lucent_seconds(2)
    lucent = (lucent_seconds(long) - lucent_seconds(short)) / (long - short)
    print(f"{jaxviz} {lucent}")
""")


def whole_process(command: list[str], env: dict) -> float:
  began = time.perf_counter()
  subprocess.run(command, check=True, capture_output=True, text=True, env=env)
  return time.perf_counter() - began


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", type=int, default=10)
  parser.add_argument("--maps", type=int, default=2)
  parser.add_argument("--steps", type=int, default=512)
  parser.add_argument("--json", type=Path)
  args = parser.parse_args()
  maps = ",".join(str(m) for m in range(args.maps))

  with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    torch.manual_seed(0)
    pth = work / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), pth)
    weights = work / "vgg16.safetensors"
    torch_weights.convert_file(pth, weights)
    (work / "lucent_render.py").write_text(LUCENT_SCRIPT)
    env = {**os.environ, "JAXVIZ_CACHE_DIR": str(work / "cache")}
    jaxviz = [sys.executable, "-m", "jaxviz.cli", "render", "--recipe", "lucid", "--layer",
              str(args.layer), "--maps", maps, "--steps", str(args.steps), "--weights",
              str(weights)]
    lucent = [sys.executable, str(work / "lucent_render.py"), str(args.layer), maps,
              str(args.steps)]
    figures = {"machine": f"{os.cpu_count()} CPUs", "layer": args.layer, "maps": args.maps,
               "steps": args.steps}
    figures["jaxviz_cold_s"] = whole_process(jaxviz + ["--out", str(work / "cold")], env)
    figures["lucent_cold_s"] = whole_process(lucent, env)
    figures["jaxviz_warm_s"] = whole_process(jaxviz + ["--out", str(work / "warm")], env)
    figures["lucent_warm_s"] = whole_process(lucent, env)
    short, long = 8, 40
    steady = subprocess.run([sys.executable, "-c", STEADY_SCRIPT, str(args.layer), maps,
                             str(short), str(long), str(weights)], check=True,
                            capture_output=True, text=True, env=env).stdout.split()
    figures["jaxviz_s_per_step"], figures["lucent_s_per_step"] = map(float, steady[-2:])
  figures["cold_ratio"] = figures["lucent_cold_s"] / figures["jaxviz_cold_s"]
  figures["warm_ratio"] = figures["lucent_warm_s"] / figures["jaxviz_warm_s"]
  figures["steady_ratio"] = figures["lucent_s_per_step"] / figures["jaxviz_s_per_step"]
  print(json.dumps(figures, indent=2))
  if args.json:
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
  main()

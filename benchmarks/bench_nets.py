"""One map's render step on each canonical network: jaxviz against lucent's `render_vis`.

Both sides render one channel of a mid-network tap with the lucid recipe (128 px
Fourier image, lucid's standard transforms, upsampled to 224 px), float32, random
weights (the step time does not depend on their values), on the same network:
lucent's own InceptionV1 for inceptionv1, torchvision's GoogLeNet and ResNet-50
(which lucent renders as it renders any torchvision model). Each side runs the
same render twice in one process and the second run is timed, so compilation
(jaxviz) and first-touch costs (torch) are excluded: seconds per step = the
second run's time / steps. jaxviz runs in this process (no worker processes),
torch with its default threads; lucent runs the whole network, as it always does.

  python benchmarks/bench_nets.py --json benchmarks/results/cpu_nets.json
  python benchmarks/bench_nets.py --steps 4 --arch resnet50   # a quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
import torchvision

import jaxviz
from jaxviz.optvis import recipes

TAPS = {"inceptionv1": "mixed4a", "googlenet": "inception4a", "resnet50": "layer3.2"}


def torch_model(arch: str) -> torch.nn.Module:
  torch.manual_seed(0)
  if arch == "inceptionv1":
    from lucent.modelzoo.inceptionv1.InceptionV1 import InceptionV1

    model = InceptionV1()
  elif arch == "googlenet":
    model = torchvision.models.GoogLeNet(transform_input=True, aux_logits=False,
                                         init_weights=True)
  else:
    model = torchvision.models.resnet50()
  for parameter in model.parameters():
    parameter.requires_grad_(False)
  return model.eval()


def lucent_seconds(arch: str, steps: int) -> float:
  from lucent.optvis import param, render

  model = torch_model(arch)
  objective = f"{TAPS[arch].replace('.', '_')}:0"

  def run() -> float:
    began = time.perf_counter()
    render.render_vis(model, objective, param_f=lambda: param.image(128),
                      thresholds=(steps,), show_image=False, progress=False,
                      fixed_image_size=224)
    return time.perf_counter() - began

  run()
  return run()


def jaxviz_seconds(arch: str, steps: int) -> float:
  weights = jaxviz.random_weights(0, arch)

  def run() -> float:
    began = time.perf_counter()
    jaxviz.render(TAPS[arch], [0], weights=weights, schedule=recipes.Lucid(steps=steps),
                  batch=1, progress=False)
    return time.perf_counter() - began

  run()
  return run()


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--arch", action="append", choices=sorted(TAPS))
  parser.add_argument("--json", help="write the results here")
  args = parser.parse_args()
  results = {"machine": f"{platform.processor() or platform.machine()}, "
                        f"{torch.get_num_threads()} torch threads",
             "command": "python benchmarks/bench_nets.py", "steps": args.steps, "archs": {}}
  for arch in args.arch or list(TAPS):
    ours = jaxviz_seconds(arch, args.steps) / args.steps
    theirs = lucent_seconds(arch, args.steps) / args.steps
    results["archs"][arch] = {"tap": TAPS[arch], "jaxviz_s_per_step": ours,
                              "lucent_s_per_step": theirs, "speedup": theirs / ours}
    print(f"{arch:<12} {TAPS[arch]:<12} jaxviz {ours * 1e3:7.1f} ms/step   "
          f"lucent {theirs * 1e3:7.1f} ms/step   {theirs / ours:4.2f}x", flush=True)
  if args.json:
    with open(args.json, "w") as handle:
      json.dump(results, handle, indent=1)


if __name__ == "__main__":
  main()

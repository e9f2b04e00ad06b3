"""Whole processes, as a user runs them: `jaxviz render` and `jaxviz probe` against the
write-up's PyTorch loop and a plain PyTorch loop truncated at the layer, each a
process of its own, with the weights given as a `.pth`, a `.safetensors` or `random`.

Every jaxviz row is timed warm (its second run: the `.pth` converted and the
compiled programs cached by the first, as every command after a user's first
is); `render_s` is the rendering itself (`wall_time_s` in render.json, worker
start-up included), so the rest of the command is its fixed cost. With
`--before DIR` (a checkout of an older jaxviz), its rows are timed too, in the
same run.

  python benchmarks/bench_commands.py --json benchmarks/results/cpu_commands.json
  git worktree add /tmp/old 3f4982f && python benchmarks/bench_commands.py --before /tmp/old
"""

from __future__ import annotations

import argparse
import dataclasses
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
from checkouts import jaxviz_env

HERE = Path(__file__).resolve().parent

TORCH_LOOP = textwrap.dedent("""
    import json, sys, numpy as np, torch, torchvision
    from torch_loops import Plan, torch_loop
    layer, read, maps, whole = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "whole"
    plan = Plan(**{key: tuple(v) if isinstance(v, list) else v for key, v in json.loads(sys.argv[5]).items()})
    model = torchvision.models.vgg16()
    model.load_state_dict(torch.load(sys.argv[6], weights_only=True))
    model.eval()
    for parameter in model.parameters():
      parameter.requires_grad_(False)
    for unit in range(maps):  # near-grey noise, as the write-up starts
      start = (np.random.default_rng(unit).uniform(size=(plan.sides[0],) * 2 + (3,)) * 20
               + 128).astype(np.float32) / 255
      torch_loop(model, layer, read, unit, start, plan, whole)
""")


def timed(command: list[str], env: dict) -> float:
  began = time.perf_counter()
  # cwd: `python -m` puts the working directory first on sys.path, before PYTHONPATH.
  result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir())
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
  return time.perf_counter() - began


def jaxviz_rows(name: str, root: Path | None, args, work: Path, files: dict, photo: str,
                figures: dict) -> None:
  env = jaxviz_env(root, work, work / f"cache-{name}")
  render = [sys.executable, "-m", "jaxviz.cli", "render", "--layer", args.layer, "--maps",
            f"0:{args.maps}", "--size0", str(args.size0), "--scales", str(args.scales),
            "--steps", str(args.steps)]
  probe = [sys.executable, "-m", "jaxviz.cli", "probe", photo, "--layer", args.layer,
           "--no-renders"]
  for kind, weights in files.items():
    out = work / f"{name}-{kind}"
    timed(render + ["--weights", weights, "--out", str(out / "first")], env)
    seconds = timed(render + ["--weights", weights, "--out", str(out / "second")], env)
    record = json.loads((out / "second" / "render.json").read_text())
    figures[f"{name}_render_{kind}_s"] = seconds
    figures[f"{name}_render_{kind}_render_s"] = record["runs"][-1]["wall_time_s"]
    timed(probe + ["--weights", weights], env)
    figures[f"{name}_probe_{kind}_s"] = timed(probe + ["--weights", weights], env)
    print(f"{name:>6} {kind:>12}: render {seconds:6.1f} s (rendering "
          f"{figures[f'{name}_render_{kind}_render_s']:.1f} s), probe --no-renders "
          f"{figures[f'{name}_probe_{kind}_s']:.1f} s", flush=True)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--layer", default="10")
  parser.add_argument("--maps", type=int, default=16)
  parser.add_argument("--size0", type=int, default=56)
  parser.add_argument("--scales", type=int, default=4)
  parser.add_argument("--steps", type=int, default=25)
  parser.add_argument("--before", type=Path, help="an older checkout to time as well")
  parser.add_argument("--json", type=Path)
  args = parser.parse_args()

  from skimage import data
  from PIL import Image

  figures: dict = {"machine": f"{os.cpu_count()} CPUs", "layer": args.layer,
                   "maps": args.maps, "sides": [args.size0, args.scales, args.steps]}
  with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    torch.manual_seed(0)
    pth = work / "vgg16.pth"
    torch.save(torchvision.models.vgg16().state_dict(), pth)
    safetensors = work / "vgg16.safetensors"
    torch_weights.convert_file(pth, safetensors)
    photo = work / "chelsea.png"
    Image.fromarray(data.chelsea()).save(photo)
    files = {"pth": str(pth), "safetensors": str(safetensors), "random": "random"}

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    from jaxviz.optvis.recipes import Schedule
    from jaxviz.vgg import resolve_target
    from torch_loops import Plan

    target = resolve_target(args.layer)
    plan = Plan.of(Schedule(size0=args.size0, scales=args.scales, steps=args.steps))
    for kind in ("whole", "truncated"):
      seconds = timed([sys.executable, "-c", TORCH_LOOP, str(target.layer.index),
                       str(target.read.index), str(args.maps), kind,
                       json.dumps(dataclasses.asdict(plan)), str(pth)], env)
      figures[f"torch_{kind}_loop_s"] = seconds
      print(f"torch loop, {kind} network: {seconds:6.1f} s", flush=True)
    if args.before:
      jaxviz_rows("before", args.before.resolve(), args, work, files, str(photo), figures)
    jaxviz_rows("after", None, args, work, files, str(photo), figures)
  for kind in files:
    seconds = figures[f"after_render_{kind}_s"]
    figures[f"after_{kind}_vs_writeup"] = figures["torch_whole_loop_s"] / seconds
    figures[f"after_{kind}_vs_truncated"] = figures["torch_truncated_loop_s"] / seconds
  print(json.dumps(figures, indent=2))
  if args.json:
    args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
  main()

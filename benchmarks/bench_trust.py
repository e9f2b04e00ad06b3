"""What the trust numbers cost (`jaxviz trust`): forward passes only, the photos' once per
run and one per render.

1. In one process, warm (compiled): seconds per photo at 224 px of its pooled
   activations up to a layer (`trust.pooled_features`), and per render of all its
   numbers (`trust.maps_trust`: its pooled activations and its 8 shifted copies'),
   at the sides a render has (96 px: --preview; 408 px: the defaults), as seconds
   per 100 renders.
2. As a user runs it: `jaxviz sweep --preview` of some maps, then `jaxviz trust` on
   the directory against scikit-image's photos, each a process of its own; the
   trust command's time as a fraction of the sweep's.
3. Memory: `jaxviz trust` on a directory of many renders at the defaults' side
   (408 px; one step each, the pixels are what matter), its peak resident memory
   (the child's rusage), with `--before DIR` also from an older checkout.

  python benchmarks/bench_trust.py --json benchmarks/results/cpu_trust.json
  git worktree add /tmp/old f83e43a && python benchmarks/bench_trust.py --before /tmp/old
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

import numpy as np

from checkouts import jaxviz_env


def images(side: int, count: int) -> np.ndarray:
  return np.random.default_rng(side).uniform(size=(count, side, side, 3)).astype(np.float32)


def per_image_seconds(work, count: int, repeats: int = 2) -> float:
  work()  # compiles
  began = time.perf_counter()
  for _ in range(repeats):
    work()
  return (time.perf_counter() - began) / (repeats * count)


def timed(command: list[str]) -> float:
  began = time.perf_counter()
  result = subprocess.run(command, capture_output=True, text=True, cwd=tempfile.gettempdir())
  if result.returncode != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-2000:]}")
  return time.perf_counter() - began


def peak_rss_mb(command: list[str], env: dict) -> float:
  """Runs `command`; its peak resident memory in MB (Linux: ru_maxrss is in KiB)."""
  with tempfile.TemporaryFile() as errors:  # a pipe read only after the wait could fill up
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, env=env,
                               cwd=tempfile.gettempdir())
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
      errors.seek(0)
      raise RuntimeError(f"{' '.join(command)} failed:\n{errors.read()[-2000:].decode()}")
  return usage.ru_maxrss / 1024


def memory(args, work: Path, photos: Path) -> dict:
  out = work / "many"
  cli = [sys.executable, "-m", "jaxviz.cli"]
  timed([*cli, "render", "-l", args.memory_layer, "-m", args.memory_maps, "-w", "random",
         "--size0", "408", "--scales", "1", "--steps", "1", "-o", str(out)])
  maps = len(json.loads((out / "render.json").read_text())["files"])
  found = {"maps": maps, "side": 408, "layer": args.memory_layer}
  checkouts = {"after": None, **({"before": args.before.resolve()} if args.before else {})}
  for side, root in checkouts.items():
    env = jaxviz_env(root, work, work / f"cache-{side}")
    found[f"{side}_peak_mb"] = round(peak_rss_mb(
        [*cli, "trust", str(out), "--photos", str(photos), "-w", "random"], env), 1)
    print(f"trust on {maps} renders at 408 px ({side}): peak {found[f'{side}_peak_mb']:.0f} MB",
          flush=True)
  return found


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", default="10,24", help="layers to time (VGG16 indices)")
  parser.add_argument("--sides", default="96,408", help="render sides to time")
  parser.add_argument("--count", type=int, default=16, help="images per timing")
  parser.add_argument("--maps", default="0:16", help="maps of the sweep (part 2)")
  parser.add_argument("--sweep-layer", default="10")
  parser.add_argument("--memory-layer", default="5", help="layer of part 3's renders")
  parser.add_argument("--memory-maps", default="0:128", help="maps of part 3's renders")
  parser.add_argument("--before", type=Path, help="an older checkout to measure too (part 3)")
  parser.add_argument("--json", type=Path, help="write the figures here")
  args = parser.parse_args()

  from skimage import data
  from PIL import Image

  from jaxviz import app, trust
  from jaxviz.app.commands import trust_path
  from jaxviz.vgg import resolve_target

  loaded = app.load_weights("random")
  figures = {"per_image_s": {}, "command": {}}
  for layer in map(int, args.layers.split(",")):
    target = resolve_target(layer)
    path = trust_path(target)
    params = loaded.subset(target.model.modules(frozenset(path)))
    for side in [224, *map(int, args.sides.split(","))]:
      count = args.count
      if side == 224:  # a photo
        photo_array = images(side, count)
        work = lambda: trust.pooled_features(target.model, params, photo_array,  # noqa: E731
                                             path)
      else:  # a render, against the pooled activations of `count` photos
        renders, found = images(side, count), trust.pooled_features(
            target.model, params, images(224, count + 1), path)
        work = lambda: trust.maps_trust(target.model, params, renders,  # noqa: E731
                                        range(count), found, path, k=2)
      seconds = per_image_seconds(work, count)
      figures["per_image_s"][f"layer{layer}_{side}px"] = round(seconds, 4)
      print(f"layer {layer}, {side} px: {seconds * 1000:.1f} ms per "
            f"{'photo' if side == 224 else 'render'}, {seconds * 100:.1f} s per 100", flush=True)

  with tempfile.TemporaryDirectory() as work:
    work = Path(work)
    photos = work / "photos"
    photos.mkdir()
    names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina",
             "hubble_deep_field", "colorwheel", "camera", "coins", "moon", "brick", "grass",
             "gravel", "page", "text")
    for name in names:
      image = np.asarray(getattr(data, name)())
      Image.fromarray(image if image.ndim == 2 else image[..., :3]).save(photos / f"{name}.png")
    out = work / "sweep"
    cli = [sys.executable, "-m", "jaxviz.cli"]
    sweep_s = timed([*cli, "sweep", "-l", args.sweep_layer, "-m", args.maps, "-w", "random",
                     "--preview", "-o", str(out)])
    trust_s = timed([*cli, "trust", str(out), "--photos", str(photos), "-w", "random"])
    maps = len(json.loads((out / "render.json").read_text())["files"])
    figures["command"] = {"sweep": f"jaxviz sweep -l {args.sweep_layer} -m {args.maps} "
                                   "-w random --preview", "maps": maps, "photos": len(names),
                          "sweep_s": round(sweep_s, 2), "trust_s": round(trust_s, 2),
                          "trust_over_sweep": round(trust_s / sweep_s, 3)}
    print(f"sweep of {maps} maps {sweep_s:.1f} s; trust against {len(names)} photos "
          f"{trust_s:.1f} s ({trust_s / sweep_s:.1%} of the sweep)")
    figures["memory"] = memory(args, work, photos)
  if args.json:
    args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
  main()

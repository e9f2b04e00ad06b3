"""Time estimates against the truth: each case runs `jaxviz render` as a user would (a
process of its own, random weights, a fresh output directory) and reads, as it
comes, the line "≈ T left ...; --preview would take ≈ P" on stderr. `left` is
then compared with the time the command actually took from that line to its
exit, and, where --preview is offered, `P` with the same command run with
--preview. All cases share one empty cache directory made for the run, so each
case compiles its own programs, as a first try of a layer or recipe does.

  python benchmarks/bench_estimates.py --json benchmarks/results/cpu_estimates.json
  git worktree add /tmp/old ad0c173 && python benchmarks/bench_estimates.py --before /tmp/old

The cases are the ones a new user's report (issue 21) found wrong, at the same
commands where it said them; `--case` picks some.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from checkouts import jaxviz_env

CASES = {
    # name: (what it is, the command's arguments after `jaxviz render`)
    "seed_layer4_2maps": ("the write-up's recipe at its defaults (12 scales), 2 maps",
                          ["-l", "4", "-m", "0:2"]),
    "tiny_layer0_all": ("layer 0, all 64 maps (the report: 24 min said, 2 min 7 s taken)",
                        ["-l", "0", "-m", "all"]),
    "preview_layer24_8maps": ("--preview of 8 maps at layer 24 (27 s said, 111 s taken)",
                              ["-l", "24", "-m", "0:8", "--preview"]),
    "preview_layer24_5maps": ("--preview of 5 maps at layer 24 (2 min said, 74 s taken)",
                              ["-l", "24", "-m", "0:5", "--preview"]),
    "lucid_layer10": ("lucid at its defaults, 1 map (5 s said, 34 s taken)",
                      ["-l", "10", "-m", "0", "--recipe", "lucid"]),
    "lucid_layer10_4maps": ("lucid at its defaults, 4 maps",
                            ["-l", "10", "-m", "0:4", "--recipe", "lucid"]),
    "maco_layer10_preview": ("MACO with --preview (100 steps of 6 crops, 1280 px), 1 map",
                             ["-l", "10", "-m", "0", "--recipe", "maco", "--preview"]),
    # For the suite's check that this script runs; not in the table.
    "tiny": ("a short lucid render", ["-l", "10", "-m", "0", "--recipe", "lucid", "--steps",
                                      "160"]),
}
TABLE = [name for name in CASES if name != "tiny"]

ESTIMATE = re.compile(r"≈ (?P<left>.+?) left for .*?(; --preview would take ≈ (?P<preview>.+))?$")


def seconds(text: str) -> float:
  """'40 s', '2 min 27 s', '19 min', '2.5 h' (what `progress.duration` writes) in seconds."""
  total = 0.0
  for amount, unit in re.findall(r"([\d.]+) (s|min|h)\b", text):
    total += float(amount) * {"s": 1, "min": 60, "h": 3600}[unit]
  return total


def run(command: list[str], env: dict) -> dict:
  """Runs `command`; returns its wall time and, if it said one, its estimate and the time
  from that line to its exit."""
  began = time.perf_counter()
  process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                             text=True, env=env, cwd=tempfile.gettempdir())
  said, lines = None, []
  for line in process.stderr:
    lines.append(line)
    match = ESTIMATE.search(line.strip())
    if match and said is None:
      said = (time.perf_counter(), match)
  if process.wait() != 0:
    raise RuntimeError(f"{' '.join(command)} failed:\n{''.join(lines)[-2000:]}")
  ended = time.perf_counter()
  row = {"wall_s": round(ended - began, 2), "estimate_line": None}
  if said is not None:
    at, match = said
    row.update(estimate_line=match.group(0), said_at_s=round(at - began, 2),
               estimated_left_s=seconds(match.group("left")), actual_left_s=round(ended - at, 2),
               estimated_preview_s=seconds(match.group("preview")) if match.group("preview")
               else None)
    row["ratio"] = round(row["estimated_left_s"] / row["actual_left_s"], 2)
  return row


def spectrum_file(work: Path, env: dict) -> Path:
  """A MACO magnitude spectrum made by `jaxviz spectrum` from scikit-image's photos."""
  import skimage.data
  import skimage.io

  photos = work / "photos"
  photos.mkdir(exist_ok=True)
  for name in ("astronaut", "coffee", "chelsea", "rocket"):
    skimage.io.imsave(photos / f"{name}.png", getattr(skimage.data, name)(), check_contrast=False)
  out = work / "spectrum.npy"
  subprocess.run([sys.executable, "-m", "jaxviz.cli", "spectrum", str(photos), "--out", str(out)],
                 check=True, capture_output=True, env=env, cwd=tempfile.gettempdir())
  return out


def cases_rows(root: Path | None, names: list[str], work: Path, previews: bool) -> dict:
  cache = work / f"cache-{root.name if root else 'installed'}"
  cache.mkdir()
  env = jaxviz_env(root, work, cache)
  rows = {}
  for name in names:
    what, arguments = CASES[name]
    if "maco" in arguments:
      arguments = [*arguments, "--spectrum", str(spectrum_file(work, env))]
    command = [sys.executable, "-m", "jaxviz.cli", "render", *arguments, "-w", "random",
               "-o", str(work / f"{cache.name}-{name}")]
    row = {"what": what, "command": "jaxviz render " + " ".join(arguments) + " -w random",
           **run(command, env)}
    if previews and row.get("estimated_preview_s") is not None:
      preview = run([*command[:-1], command[-1] + "-preview", "--preview"], env)
      row["actual_preview_s"] = preview["wall_s"]
    rows[name] = row
    print(json.dumps({name: row}), flush=True)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--case", action="append", choices=sorted(CASES),
                      help="cases to run (default: every case of the table)")
  parser.add_argument("--before", type=Path, help="an older checkout to run as well")
  parser.add_argument("--json", type=Path, help="write the figures here")
  parser.add_argument("--no-previews", dest="previews", action="store_false",
                      help="do not run the --preview commands the estimates offer")
  args = parser.parse_args()
  names = args.case or TABLE
  with tempfile.TemporaryDirectory() as work:
    figures = {"machine": os.uname().nodename, "cores": len(os.sched_getaffinity(0)),
               "after": cases_rows(None, names, Path(work), args.previews)}
    if args.before:
      figures["before"] = cases_rows(args.before.resolve(), names, Path(work), args.previews)
  print("case | said | took | said/took")
  for side in ("before", "after"):
    for name, row in figures.get(side, {}).items():
      if row["estimate_line"] is None:
        print(f"{side} {name} | no estimate | {row['wall_s']} s total |")
      else:
        print(f"{side} {name} | {row['estimated_left_s']:.0f} s | {row['actual_left_s']:.0f} s | "
              f"{row['ratio']}")
  if args.json:
    args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
  main()

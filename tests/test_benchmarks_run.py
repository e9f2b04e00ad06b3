"""The benchmark scripts still run (tiny settings; nothing here is timed or compared)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import lucent_or_skip

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> str:
  result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
  assert result.returncode == 0, result.stderr
  return result.stdout


def test_step_benchmark_reports_both_frameworks():
  output = run_script("benchmarks/bench_step.py", "--layer", "4", "--side", "32", "--batches",
                      "1", "--repeats", "1")
  assert "XLA" in output and "PyTorch" in output and "XLA/PyTorch time" in output


def test_render_benchmark_reports_every_loop(tmp_path):
  figures_path = tmp_path / "figures.json"
  output = run_script("benchmarks/bench_render.py", "--layer", "4", "--maps", "2", "--size0",
                      "32", "--scales", "2", "--steps", "1", "--batch", "1",
                      "--json", str(figures_path))
  for needle in ("torch_writeup_loop", "torch_truncated_loop", "jaxviz_batch1", "warm"):
    assert needle in output
  figures = json.loads(figures_path.read_text())
  assert figures["jaxviz_maps_per_s"] > 0 and figures["cli_warm_s"] > 0


def test_the_gpu_check_runs_in_its_dry_run(tmp_path):
  """benchmarks/gpu_check.sh with --dry-run: every part, tiny sizes, on this CPU; so that
  the script a lent GPU runs has already run once."""
  result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "JAXVIZ_GPU_CHECK_OUT": str(tmp_path),
                               "PYTHON": sys.executable})
  assert result.returncode == 0, result.stdout + result.stderr
  for part in ("tests", "layer", "lucid"):
    assert f"== {part}: exit 0" in result.stdout
  layer = json.loads((tmp_path / "gpu_layer.json").read_text())
  assert layer["layer"] == 2 and layer["s_per_map"] > 0 and layer["useful_tflops"] > 0
  lucid = json.loads((tmp_path / "gpu_lucid_vs_lucent.json").read_text())
  assert lucid["speedup_vs_lucent"] > 0


def test_nets_benchmark_reports_both_sides(tmp_path):
  lucent_or_skip()  # its torch side is lucent's render_vis
  figures_path = tmp_path / "nets.json"
  output = run_script("benchmarks/bench_nets.py", "--arch", "googlenet", "--steps", "1",
                      "--json", str(figures_path))
  assert "jaxviz" in output and "lucent" in output
  figures = json.loads(figures_path.read_text())["archs"]["googlenet"]
  assert figures["jaxviz_s_per_step"] > 0 and figures["lucent_s_per_step"] > 0


def test_the_estimates_benchmark_reads_the_estimate_line(tmp_path):
  figures_path = tmp_path / "figures.json"
  run_script("benchmarks/bench_estimates.py", "--case", "tiny", "--no-previews", "--json",
             str(figures_path))
  row = json.loads(figures_path.read_text())["after"]["tiny"]
  assert row["estimate_line"].startswith("≈ ") and row["estimated_left_s"] > 0
  assert 0 < row["actual_left_s"] < row["wall_s"]


def test_the_trust_benchmark_times_and_measures_every_part(tmp_path):
  figures_path = tmp_path / "figures.json"
  run_script("benchmarks/bench_trust.py", "--layers", "4", "--sides", "32", "--count", "2",
             "--maps", "0:2", "--sweep-layer", "4", "--memory-layer", "0",
             "--memory-maps", "0:2", "--before", str(ROOT), "--json", str(figures_path))
  figures = json.loads(figures_path.read_text())
  assert figures["per_image_s"]["layer4_32px"] > 0 and figures["command"]["maps"] == 2
  assert figures["command"]["trust_s"] > 0
  assert figures["memory"]["maps"] == 2
  assert figures["memory"]["after_peak_mb"] > 0 and figures["memory"]["before_peak_mb"] > 0

"""Whole-layer sweeps: sharding over devices, resume after kill -9, auto batch, the atlas.

Sweeps run as subprocesses (as users run them); float64 makes "equal" exact
enough to compare 8-bit PNGs byte for byte.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxviz import app, cpu_workers, execution
from jaxviz.optvis import render
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target

from conftest import assert_names_all, error_line, run_cli

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]


def sweep_command(out: Path, *extra: str) -> list[str]:
  return [sys.executable, "-m", "jaxviz.cli", "sweep", "--layer", "10", "--weights", "random",
          "--out", str(out), *TINY, *extra]


def run_sweep(out: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
  result = subprocess.run(sweep_command(out, *extra), capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})
  assert result.returncode == 0, result.stderr
  return result


def pngs(folder: Path) -> dict[str, np.ndarray]:
  return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("10_*.png"))}


FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}


@pytest.mark.cpu_only(reason="four forced host devices are CPU devices")
@pytest.mark.parametrize("dtype,batch,maps", [("float64", 8, 12), ("float32", 16, 20)])
def test_four_host_devices_render_the_same_images_as_one(tmp_path, dtype, batch, maps):
  """2 maps per device (float64) and 4 (float32), each over two batches, the last
  padded: every device runs the one-device program of batch // 4 maps."""
  one, four = tmp_path / "one", tmp_path / "four"
  run_sweep(one, "--maps", f"0:{maps}", "--batch", str(batch // 4), "--dtype", dtype)
  result = run_sweep(four, "--maps", f"0:{maps}", "--batch", str(batch), "--dtype", dtype,
                     env=FOUR_DEVICES)
  assert "4 cpu device(s)" in result.stderr
  ours, reference = pngs(four), pngs(one)
  assert sorted(ours) == [f"10_{m}.png" for m in sorted(range(maps), key=str)]
  for name in reference:
    np.testing.assert_array_equal(ours[name], reference[name])


NO_COLLECTIVES = """
import jax, jax.numpy as jnp, numpy as np, re
from jaxviz import app, execution, weights
from jaxviz.optvis import render
from jaxviz.optvis.recipes import Schedule
from jaxviz.vgg import resolve_target
target = resolve_target(10)
recipe = app.layer_recipe(target, Schedule(size0=32, scales=2, steps=2))
mesh = execution.map_mesh()
assert mesh.size == 4
params = execution.prepare_params(recipe, target.model, weights.random_weights(0).params,
                                  "float32", mesh)
units = jax.device_put(jnp.arange(8, dtype=jnp.int32),
                       jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("maps")))
key = jax.random.key(0)
static = dict(recipe=recipe, model=target.model, mesh=mesh)
variables = render.batched_start(**static, key=key, units=units, dtype=jnp.dtype("float32"))
states = render.batched_optimizer_init(**static, variables=variables)
programs = {
    "start": render.batched_start.lower(**static, key=key, units=units,
                                        dtype=jnp.dtype("float32")),
    "dead": render.batched_dead.lower(**static, params=params, variables=variables, units=units),
    "step": render.batched_steps.lower(**static, params=params, key=key,
                                       first_step=jnp.int32(0), variables=variables,
                                       opt_states=states, units=units, num_steps=1),
    "scan": render.batched_steps.lower(**static, params=params, key=key,
                                       first_step=jnp.int32(0), variables=variables,
                                       opt_states=states, units=units, num_steps=2),
    "end": render.batched_end_scale.lower(**static, params=params, variables=variables,
                                          units=units),
    "next": render.batched_next_scale.lower(**static, variables=variables, side=38),
}
pattern = re.compile(r"all-gather|all-reduce|collective-permute|all-to-all|reduce-scatter")
for name, lowered in programs.items():
  text = lowered.compile().as_text()
  found = sorted(set(pattern.findall(text)))
  print(name, "collectives:", found or "none")
"""


@pytest.mark.cpu_only(reason="the 4-device mesh is made of forced host devices")
def test_sharded_programs_hold_no_collective():
  """Maps are independent: no per-step or per-scale program may talk between devices
  (an all-gather there deadlocked a 4-device sweep with several maps per device)."""
  result = subprocess.run([sys.executable, "-c", NO_COLLECTIVES], capture_output=True,
                          text=True, timeout=300, env={**os.environ, **FOUR_DEVICES})
  assert result.returncode == 0, result.stderr
  lines = [line for line in result.stdout.splitlines() if "collectives:" in line]
  assert len(lines) == 6 and all(line.endswith("none") for line in lines), result.stdout


def children_of(pid: int) -> list[int]:
  children = []
  for stat in Path("/proc").glob("[0-9]*/stat"):
    try:
      fields = stat.read_text().rsplit(")", 1)[1].split()
    except OSError:
      continue
    if int(fields[1]) == pid:
      children.append(int(stat.parent.name))
  return children


def wait_until_gone(pids: list[int], seconds: float) -> bool:
  """True once none of `pids` is alive (a zombie awaiting its reaper counts as gone)."""
  deadline = time.time() + seconds
  while time.time() < deadline:
    alive = []
    for pid in pids:
      try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
      except OSError:
        continue
      if state != "Z":
        alive.append(pid)
    if not alive:
      return True
    time.sleep(0.1)
  return False


@pytest.mark.cpu_only(reason="counts the worker processes, one per core on CPU")
def test_kill_9_then_resume_equals_an_uninterrupted_sweep(tmp_path):
  whole, killed = tmp_path / "whole", tmp_path / "killed"
  extra = ("--maps", "0:24", "--batch", "2", "--dtype", "float64")
  run_sweep(whole, *extra)

  process = subprocess.Popen(sweep_command(killed, *extra), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
  deadline = time.time() + 300
  while time.time() < deadline and len(list(killed.glob("10_*.png"))) < 4:
    time.sleep(0.02)
  workers = children_of(process.pid)
  # Only the parent is killed: its CPU worker processes must die with it.
  os.kill(process.pid, signal.SIGKILL)
  process.wait()
  cores = len(cpu_workers.usable_cores())
  assert len(workers) == (min(cores, 12) if cores > 1 else 0)  # 12 batches of 2 maps
  assert wait_until_gone(workers, seconds=20), f"orphaned worker processes {workers}"
  with contextlib.suppress(ProcessLookupError):
    os.killpg(process.pid, signal.SIGKILL)
  finished_before = len(json.loads((killed / "render.json").read_text())["files"])
  assert 2 <= finished_before < 24

  result = run_sweep(killed, *extra)
  assert f"{finished_before} maps already rendered" in result.stderr
  ours, reference = pngs(killed), pngs(whole)
  assert sorted(ours) == sorted(reference) and len(ours) == 24
  for name in reference:
    np.testing.assert_array_equal(ours[name], reference[name])
  assert (killed / "index.html").is_file()


def test_a_sweep_with_other_settings_is_refused(tmp_path):
  out = tmp_path / "o"
  run_cli("sweep", "--layer", "10", "--maps", "0:2", "--weights", "random", "--out", out, *TINY)
  line = error_line(run_cli("sweep", "--layer", "10", "--maps", "0:2", "--weights", "random:1",
                            "--out", out, *TINY, expect_exit=1))
  assert_names_all(line, "other settings or weights", "weights", "--force")


def test_process_shares_split_the_maps_and_merge_in_the_atlas(tmp_path):
  out = tmp_path / "o"
  for index in (0, 1):
    run_cli("sweep", "--layer", "10", "--maps", "0:5", "--weights", "random", "--out", out,
            "--process-index", index, "--process-count", 2, *TINY)
  shares = [json.loads((out / f"render.p{k}.json").read_text())["files"] for k in (0, 1)]
  assert sorted(shares[0]) == ["0", "2", "4"] and sorted(shares[1]) == ["1", "3"]
  assert (out / "index.html").read_text().count('class="thumb"') == 5


def free_loopback_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def distributed_sweeps(out: Path, *extra: str) -> list[subprocess.Popen]:
  """Two `sweep --distributed` processes with a real coordinator on 127.0.0.1."""
  address = f"127.0.0.1:{free_loopback_port()}"
  env = {**os.environ, "JAX_COORDINATOR_ADDRESS": address,
         "JAX_COORDINATOR_BIND_ADDRESS": address, "JAX_NUM_PROCESSES": "2"}
  return [subprocess.Popen(sweep_command(out, *extra, "--distributed"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True,
                           env={**env, "JAX_PROCESS_ID": str(k)}) for k in (0, 1)]


@pytest.mark.cpu_only(reason="two processes would each take the one GPU's memory")
def test_two_distributed_processes_survive_a_kill_and_equal_one(tmp_path):
  """A real jax.distributed run on loopback: process 0 is killed mid-way (the other
  stops too, as JAX does), both are rerun, and the merged directory equals a single
  process's sweep."""
  one, two = tmp_path / "one", tmp_path / "two"
  extra = ("--maps", "0:8", "--dtype", "float64", "--steps", "15", "--batch", "1")
  run_sweep(one, *extra)
  processes = distributed_sweeps(two, *extra)
  try:
    deadline = time.time() + 120
    while time.time() < deadline and not list(two.glob("10_*.png")):
      time.sleep(0.05)
    processes[0].kill()
    for process in processes:
      process.communicate(timeout=120)
  finally:
    for process in processes:
      process.kill()
  finished = len(list(two.glob("10_*.png")))
  assert 1 <= finished < 8 and processes[1].returncode != 0

  processes = distributed_sweeps(two, *extra)
  try:
    errors = [process.communicate(timeout=300)[1] for process in processes]
  finally:
    for process in processes:
      process.kill()
  assert [process.returncode for process in processes] == [0, 0], errors
  assert "process 1 of 2" in errors[1]
  shares = [json.loads((two / f"render.p{k}.json").read_text())["files"] for k in (0, 1)]
  assert sorted(shares[0]) == ["0", "2", "4", "6"] and sorted(shares[1]) == ["1", "3", "5", "7"]
  ours, reference = pngs(two), pngs(one)
  assert sorted(ours) == sorted(reference) and len(ours) == 8
  for name in reference:
    np.testing.assert_array_equal(ours[name], reference[name])


def layer_auto_batch(schedule, target, params, devices=None):
  return execution.auto_batch(app.layer_recipe(target, schedule), target.model, params,
                              devices=devices)


@pytest.mark.cpu_only(reason="checks the CPU batch rule on this machine's devices")
def test_auto_batch_is_sane_on_cpu_and_scales_with_gpu_memory(vgg16_weights):
  params = vgg16_weights.params
  conv5_1 = resolve_target(24)
  # CPU: batching pays only where layers are tiny (conv5 at 56 px; measured, see
  # execution.auto_batch), and never beyond a quarter of the RAM (a few maps of
  # conv5_1 at 408 px here).
  small = Schedule(scales=1)
  assert layer_auto_batch(small, conv5_1, params) == 8
  assert layer_auto_batch(small, resolve_target(10), params) == 1
  assert 1 <= layer_auto_batch(Schedule(), conv5_1, params) <= 8

  class FakeGpu:
    platform = "gpu"

    def __init__(self, gib):
      self.gib = gib

    def memory_stats(self):
      return {"bytes_limit": self.gib * 2**30}

  per_map = execution.activation_bytes_per_map(app.layer_recipe(conv5_1, Schedule()),
                                               conv5_1.model, params)
  assert 200 * 2**20 < per_map < 2 * 2**30  # a few hundred MB per map at 408 px
  small, big = (layer_auto_batch(Schedule(), conv5_1, params, devices=[FakeGpu(g)])
                for g in (16, 80))
  assert 1 <= small < big <= 512
  assert layer_auto_batch(Schedule(), conv5_1, params, devices=[FakeGpu(80)] * 2) == \
      min(512, 2 * big)


def test_out_of_memory_halves_the_batch_and_finishes(monkeypatch, vgg16_weights):
  real_render_batch = render.render_batch
  seen_sizes = []

  def small_memory(recipe, model, params, maps, *args, **kwargs):
    seen_sizes.append(len(maps))
    if len(maps) > 2:
      raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to "
                                       "allocate")
    return real_render_batch(recipe, model, params, maps, *args, **kwargs)

  monkeypatch.setattr(render, "render_batch", small_memory)
  halved = []
  target = resolve_target(10)
  recipe = app.layer_recipe(target, Schedule(size0=32, scales=1, steps=1))
  results = list(execution.iter_render(recipe, target.model, vgg16_weights.params, range(5),
                                       jax.random.key(0), batch=8,
                                       on_out_of_memory=halved.append))
  assert halved == [2]  # 5 maps -> batch 5, then halved to 2
  assert [m for r in results for m in r.maps] == [0, 1, 2, 3, 4]
  assert seen_sizes[0] == 5 and set(seen_sizes[1:]) == {2}


def test_only_jaxs_out_of_memory_error_halves_the_batch(monkeypatch, vgg16_weights):
  def other_error(*args, **kwargs):
    raise RuntimeError("could not allocate a file handle: out of memory")  # not JAX's OOM

  monkeypatch.setattr(render, "render_batch", other_error)
  target = resolve_target(10)
  recipe = app.layer_recipe(target, Schedule(size0=32, scales=1, steps=1))
  with pytest.raises(RuntimeError, match="file handle"):
    list(execution.iter_render(recipe, target.model, vgg16_weights.params, range(4),
                               jax.random.key(0), batch=4))


def test_atlas_rebuild_shows_top_photos(tmp_path, photo_files):
  out = tmp_path / "o"
  run_cli("sweep", "--layer", "10", "--maps", "0:3", "--weights", "random", "--out", out, *TINY)
  table = {"maps": {"1": [{"image": str(photo_files["chelsea.jpg"]), "mean": 1.5}]}}
  (tmp_path / "table.json").write_text(json.dumps(table))
  run_cli("atlas", out, "--top-images", tmp_path / "table.json")
  page = (out / "index.html").read_text()
  assert page.count('class="thumb"') == 3 and "chelsea.jpg: 1.500" in page
  assert "http://" not in page and "https://" not in page
  assert "no render record" in error_line(run_cli("atlas", tmp_path, expect_exit=1))


def chromium_path() -> str | None:
  return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(
    (chromium_path() is None or not __import__("importlib").util.find_spec("playwright"))
    and not os.environ.get("JAXVIZ_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and playwright (.ci/run installs both and sets "
           "JAXVIZ_REQUIRE_BROWSER so this never skips in CI)")
def test_atlas_loads_in_chromium_without_errors_and_sorts(tmp_path):
  from playwright.sync_api import sync_playwright

  out = tmp_path / "o"
  run_cli("sweep", "--layer", "10", "--maps", "0:7", "--weights", "random", "--out", out, *TINY)
  record = json.loads((out / "render.json").read_text())
  objectives = {int(m): v[-1] for m, v in record["objectives"].items()}
  problems, requests = [], []
  with sync_playwright() as playwright:
    browser = playwright.chromium.launch(
        executable_path=chromium_path(),
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
              "--disable-component-update", "--disable-sync", "--no-first-run"])
    page = browser.new_page()
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto((out / "index.html").as_uri())
    page.wait_for_load_state("load")
    thumbs = page.locator("img.thumb")
    assert thumbs.count() == 7
    widths = page.eval_on_selector_all("img.thumb", "els => els.map(e => e.naturalWidth)")
    assert all(w > 0 for w in widths), "a thumbnail did not load"
    page.click("#by-objective")
    shown = [int(i) for i in page.eval_on_selector_all(".map", "els => els.map(e => "
                                                                "e.dataset.index)")]
    browser.close()
  assert not problems, problems
  assert all(url.startswith("file://") for url in requests), requests
  assert shown == sorted(objectives, key=lambda m: -objectives[m])

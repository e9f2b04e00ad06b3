"""A new user's first hour: honest progress, answers before long work, outputs that say
what made them, a cache that concurrent processes share, CLI conventions."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxviz import app, figures, fileio, progress, store
from jaxviz.optvis.recipes import Schedule
from jaxviz.progress import Workload
from jaxviz.settings import ModelSettings, RenderOptions
from jaxviz.vgg import resolve_target

from conftest import run_cli

TINY = ["--size0", "32", "--scales", "2", "--steps", "3"]
TINY_SCHEDULE = Schedule(size0=32, scales=2, steps=3)


class Recorder(app.RenderEvents):
  def __init__(self, out: Path):
    self.out, self.plans, self.work_done, self.calls = out, [], 0, []

  def plan(self, plan):
    self.plans.append(plan)
    self.calls.append("plan")

  def work(self, amount):
    self.work_done += amount
    self.calls.append("work")

  def finished(self):
    self.calls.append("finished")
    self.grid_at_finish = (self.out / "grid.png").is_file()
    self.pngs_at_finish = len(list(self.out.glob("10_*.png")))


def test_progress_counts_work_by_scale_and_ends_after_the_last_write(tmp_path, vgg16_weights):
  out = tmp_path / "o"
  events = Recorder(out)
  schedule = Schedule(size0=32, scales=3, steps=2)
  app.render_to_dir(vgg16_weights, resolve_target(10), [1, 4, 7], out,
                    RenderOptions(schedule=schedule, batch=2), events=events)
  (plan,) = events.plans
  assert events.work_done == plan.work > 0
  assert events.calls[0] == "plan" and events.calls[-1] == "finished"
  assert events.grid_at_finish and events.pngs_at_finish == 3
  # Work weighs steps by the pixels the network sees: 32, 38 and 45 px scales.
  sides = schedule.sides()
  per_map = sum(schedule.steps_at(i) * side * side for i, side in enumerate(sides))
  assert plan.work == 4 * per_map  # two batches of two (the last padded)
  assert plan.preview.work == 4 * sum(Schedule().preview().steps_at(i) * side * side
                                      for i, side in enumerate(Schedule().preview().sides()))


def test_the_estimate_is_printed_once_the_speed_is_measured(tmp_path, vgg16_weights, capsys):
  """A clock that advances 2 s per reading: the estimate waits until the speed is
  measured (tests/test_estimates.py holds it to the truth), then says it once, with
  --preview's time when --preview is less work (700 steps at 32 px are more than its
  4 scales to 96 px)."""
  schedule = Schedule(size0=32, scales=1, steps=700)
  two_scales = Schedule(size0=32, scales=2, steps=8)
  for maps, offered in (("1", True), ("1,4", False)):
    readings = itertools.count(0, 2)
    with progress.ProgressEvents(clock=lambda: float(next(readings))) as events:
      app.commands.render(10, maps, tmp_path / maps, ModelSettings(weights=vgg16_weights),
                          RenderOptions(schedule=schedule if offered else two_scales,
                                        batch=2),
                          events=events)
    lines = [line for line in capsys.readouterr().err.splitlines() if " left for " in line]
    assert len(lines) == 1, lines
    steps, side = (700, 32) if offered else (two_scales.total_steps(), 38)
    assert f"left for {maps.count(',') + 1} map" in lines[0]
    assert f"({steps} steps, up to {side} px) on this machine" in lines[0]
    assert ("--preview would take" in lines[0]) == offered


def test_a_progress_callback_gets_each_piece_of_work_from_zero():
  seen = []
  events = progress.CallbackEvents(lambda done, total: seen.append((done, total)))
  events.begin("scoring 3 images", total=3)
  events.work(1)
  events.work(2)
  events.begin("rendering")
  events.plan(app.RenderPlan(0, 1, 1, Workload((1,), (10,), 1), 32))
  events.work(4)
  assert seen == [(1, 3), (3, 3), (4, 10)]


def test_probe_prints_its_ranking_before_any_render(tmp_path, photo_files, monkeypatch):
  seen = {}
  real = app.rendering.render_to_dir

  def spy(*args, **kwargs):
    seen["stdout"] = sys.stdout.buffer.getvalue().decode()  # CliRunner's captured stdout
    return real(*args, **kwargs)

  monkeypatch.setattr(app.rendering, "render_to_dir", spy)
  result = run_cli("probe", photo_files["chelsea.jpg"], "-l", "10", "--top", "3", "--map", "7",
                   "-w", "random", "-o", tmp_path / "fig.png", "--renders", tmp_path / "r",
                   *TINY)
  assert "rank   map  mean" in seen["stdout"] and "map 7: rank" in seen["stdout"]
  assert "figure:" not in seen["stdout"]
  assert result.stdout.strip().splitlines()[-1] == f"figure: {tmp_path / 'fig.png'}"
  assert "--preview renders quickly" in result.output  # offered only when not asked for

  as_json = run_cli("probe", photo_files["chelsea.jpg"], "-l", "10", "--top", "3", "-w",
                    "random", "-o", tmp_path / "fig2.png", "--renders", tmp_path / "r", "--json",
                    *TINY)
  assert json.loads(as_json.stdout)["layer"] == 10  # stdout is the JSON alone


def test_every_png_says_what_made_it_and_info_reads_it(tmp_path, photo_files):
  out = tmp_path / "o"
  run_cli("render", "-l", "10", "-m", "3", "-w", "random", "-o", out, *TINY)
  info = fileio.png_info(out / "10_3.png")
  made = info[fileio.PROVENANCE_KEY]
  assert info["Software"].startswith("jaxviz ") and "RANDOM" in info["Title"]
  assert (made["layer"], made["layer_name"], made["map"], made["recipe"]) == (10, "conv3_1", 3,
                                                                               "seed")
  assert made["random_weights"] is True and made["weights"] == "random (seed 0)"
  record = json.loads((out / "render.json").read_text())
  assert made["settings_hash"] == record["identity_hash"]
  shown = run_cli("info", out / "10_3.png").stdout
  assert "RANDOM weights" in shown and "conv3_1 (layer 10, post-ReLU) map 3" in shown
  assert json.loads(run_cli("info", out / "10_3.png", "--json").stdout)["map"] == 3
  assert fileio.PROVENANCE_KEY in fileio.png_info(out / "grid.png")

  figure = tmp_path / "fig.png"
  run_cli("probe", photo_files["chelsea.jpg"], "-l", "10", "-w", "random", "--no-renders",
          "-o", figure)
  assert fileio.png_info(figure)[fileio.PROVENANCE_KEY]["photo"] == str(photo_files["chelsea.jpg"])
  plain = tmp_path / "plain.png"
  Image.new("RGB", (4, 4)).save(plain)
  assert "not written by jaxviz" in run_cli("info", plain, expect_exit=1).output


def test_grids_keep_the_order_asked_and_titles_fit(tmp_path, monkeypatch):
  drawn = []
  real = figures.render_grid
  monkeypatch.setattr(figures, "render_grid",
                      lambda images, maps, *a, **k: drawn.append((list(maps),
                                                                  real(images, maps, *a, **k))))
  out = tmp_path / "o"
  run_cli("render", "-l", "10", "-m", "5,1,3", "-w", "random", "-o", out, *TINY)
  maps, figure = drawn[-1]
  assert maps == [5, 1, 3]
  assert [axes.get_title() for axes in figure.axes] == ["fmap 5", "fmap 1", "fmap 3"]
  one = tmp_path / "one"
  run_cli("render", "-l", "10", "-m", "2", "-w", "random", "-o", one, *TINY)
  _, figure = drawn[-1]
  figure.canvas.draw()
  title = figure._suptitle.get_window_extent()
  assert title.x0 >= 0 and title.x1 <= figure.bbox.width  # one map: the title is not cut


def test_probe_figure_labels_its_axis_and_marks_the_asked_maps(tmp_path):
  means = np.random.default_rng(0).uniform(size=64)
  figure = figures.probe_figure(np.zeros((8, 8, 3)), means, [3, 9], "conv5_1 (layer 24)", None,
                                tmp_path / "f.png", asked={40: (17, 0.5)})
  plot = figure.axes[1]
  assert plot.get_xlabel() == "feature map (channel index)"
  assert plot.get_title() == "Top 2 Feature Maps from conv5_1 (layer 24)"
  assert "map 40: rank 17" in [text.get_text() for text in plot.texts]
  marked = [line for line in plot.get_lines() if line.get_xdata()[0] == 40]
  assert marked and marked[0].get_color() == "tab:orange"


def test_outputs_count_and_plural_right(tmp_path, photo_files):
  out = tmp_path / "o"
  first = run_cli("render", "-l", "10", "-m", "0", "-w", "random", "-o", out, *TINY)
  assert "rendered 1 map in" in first.stdout and "1 map in" in first.stdout
  again = run_cli("render", "-l", "10", "-m", "0", "-w", "random", "-o", out, *TINY)
  assert "rendered nothing new" in again.stdout and "1 map already rendered" in again.output
  table = run_cli("classify", photo_files["chelsea.jpg"], "-w", "random").stdout
  assert table.splitlines()[0].split() == ["prob", "logit", "class", "label"]


def test_cli_conventions():
  from jaxviz import __version__

  assert run_cli("--version").stdout.strip() == f"jaxviz {__version__}"
  for command in ("render", "probe", "top-images", "sweep", "compare", "convert", "spectrum"):
    text = run_cli(command, "--help").output
    assert "<bool>" not in text, (command, text)
    assert "-o" in text.split(), command
  assert "<bool>" not in run_cli("--help").output
  usage = run_cli("probe", "--help").output
  assert "probe [OPTIONS] PHOTO" in usage and "{" not in usage
  assert "-w" in usage.split() and "-l" in usage.split()
  assert "convert [OPTIONS] SRC" in run_cli("convert", "--help").output


def test_concurrent_processes_share_an_empty_compilation_cache(tmp_path, vgg16_safetensors):
  """Two renders (each with its two CPU worker processes) start at once on an empty
  cache: none reads another's half-written entry (JAX locks the cache, execution.py)."""
  env = {**os.environ, "JAXVIZ_CACHE_DIR": str(tmp_path / "cache")}
  processes = [subprocess.Popen(
      [sys.executable, "-m", "jaxviz.cli", "render", "-l", "4", "-m", "0:4", "--batch", "1",
       "-w", str(vgg16_safetensors), "-o", str(tmp_path / f"o{k}"), "--size0", "16",
       "--scales", "2", "--steps", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True, env=env)
      for k in range(2)]
  errors = [process.communicate(timeout=300)[1] for process in processes]
  assert [process.returncode for process in processes] == [0, 0], errors
  assert not any("compilation cache" in stderr for stderr in errors), errors
  # The race is rare; that every read and write went through JAX's lock is not: its
  # lock file exists only when the cache is size-limited (execution.py).
  assert (tmp_path / "cache" / "xla" / ".lockfile").exists()
  assert any(p.name.endswith("-cache") for p in (tmp_path / "cache" / "xla").iterdir())


CACHE_ONE_PROGRAM = """
import sys, jax, jax.numpy as jnp
from jaxviz import xla_cache
if sys.argv[1] == "unlimited":  # as jaxviz wrote its cache before it set a size limit
  jax.config.update("jax_compilation_cache_dir", sys.argv[2])
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
else:
  xla_cache.use(sys.argv[2])
jax.jit(lambda x: x * float(sys.argv[3]))(jnp.ones(3)).block_until_ready()
"""


def test_a_cache_written_without_a_size_limit_keeps_working(tmp_path):
  """JAX's size-limited cache fails every write when an entry has no access-time file,
  which is how entries written without the limit (an older jaxviz) are."""
  cache = tmp_path / "xla"
  def cache_one(mode, factor):
    return subprocess.run([sys.executable, "-c", CACHE_ONE_PROGRAM, mode, str(cache), factor],
                          capture_output=True, text=True, timeout=120)
  assert cache_one("unlimited", "2").returncode == 0
  old_entries = set(cache.glob("*-cache"))
  assert old_entries and not list(cache.glob("*-atime"))
  result = cache_one("jaxviz", "3")  # another constant: at least one new program
  assert result.returncode == 0 and "persistent compilation cache" not in result.stderr, \
      result.stderr
  entries = set(cache.glob("*-cache"))
  assert entries > old_entries
  assert {p.name[:-len("-cache")] for p in entries} == {
      p.name[:-len("-atime")] for p in cache.glob("*-atime")}


def test_preview_is_a_documented_small_schedule_and_recorded(tmp_path):
  out = tmp_path / "o"
  run_cli("render", "-l", "10", "-m", "0", "-w", "random", "-o", out, "--preview",
          "--steps", "2")
  record = json.loads((out / "render.json").read_text())
  assert record["identity"]["preview"] is True
  assert record["identity"]["schedule"] == {**json.loads(json.dumps(
      Schedule().preview().spec())), "steps": 2}
  assert record["sides"] == list(Schedule().preview().sides())
  assert store.read_record(out / "render.json")["files"] == {"0": "10_0.png"}


def test_the_python_api_reports_progress(vgg16_weights):
  import jaxviz

  seen = []
  jaxviz.render(10, [2, 3], weights=vgg16_weights, schedule=Schedule(size0=32, scales=2, steps=2),
                batch=1, progress=lambda done, total: seen.append((done, total)))
  assert seen and seen[-1][0] == seen[-1][1] > 0
  assert [done for done, _ in seen] == sorted(done for done, _ in seen)


@pytest.mark.parametrize("recipes", [1, 2])
def test_compare_title_is_not_cut_with_one_or_two_recipe_columns(tmp_path, recipes):
  """compare's title (layer, weights label) fits in the figure however few recipes."""
  names = ["seed", "lucid"][:recipes]
  images = {name: {7: np.zeros((8, 8, 3))} for name in names}
  objectives = {name: {7: 1.0} for name in names}
  title = "conv5_1 (layer 24, post-ReLU), weights random (seed 0) (RANDOM, untrained)"
  figure = figures.compare_figure(images, objectives, [7], tmp_path / "c.png", title)
  figure.canvas.draw()
  extent = figure._suptitle.get_window_extent()
  assert extent.x0 >= 0 and extent.x1 <= figure.bbox.width


def test_progress_in_a_notebook_without_ipywidgets_is_plain_text(monkeypatch):
  """rich draws its bar in Jupyter as a widget; without ipywidgets it would only warn
  "install ipywidgets" and show an empty output, so jaxviz falls back to text there."""
  import importlib.util
  import warnings

  import rich.console

  monkeypatch.setattr(rich.console, "_is_jupyter", lambda: True)  # as in a kernel
  real_find_spec = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec",
                      lambda name, *a: None if name == "ipywidgets" else real_find_spec(name, *a))
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # rich's "install ipywidgets" would raise here
    with progress.ProgressEvents() as events:
      events.begin("rendering 1 map", total=2)
      events.work(1)
      events.note("a note")
      events.work(1)
    assert not events.bar.console.is_jupyter

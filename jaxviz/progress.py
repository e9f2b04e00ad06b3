"""What a command reports as it goes, and how people see it: `Events`, a rich progress
bar with time estimates (`ProgressEvents`, `Estimator`), a callback (`CallbackEvents`),
counted nouns.

The application layer (`jaxviz.app`) tells an `Events` what happens; the CLI and
the Python API (`jaxviz.render(..., progress=True)`, which notebooks show) pass
the same `ProgressEvents`, so both faces print the same things. This module
imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import threading
import time


def plural(count: int, noun: str) -> str:
  """'1 map', '2 maps'."""
  return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
  """'40 s', '2 min 27 s', '19 min', '2.5 h'."""
  if seconds < 90:
    return f"{seconds:.0f} s"
  if seconds < 10 * 60:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"
  if seconds < 90 * 60:
    return f"{seconds / 60:.0f} min"
  return f"{seconds / 3600:.1f} h"


class Events:
  """What the application layer reports; every method does nothing here.

  Work is counted in steps times the model's input pixels (`app.RenderPlan`),
  so that every scale weighs what it costs; scoring photos counts photos.
  """

  def note(self, line: str) -> None:
    """An informational line: the weights loaded, a conversion, a warning."""

  def begin(self, label: str, total: int | None = None) -> None:
    """A piece of work starts (rendering some maps, scoring photos)."""

  def plan(self, plan) -> None:
    """The rendering work is known (`app.RenderPlan`)."""

  def work(self, amount: int) -> None:
    """`amount` more work is done."""

  def side_by_side(self, batches: int) -> None:
    """Rendering starts with `batches` batches running side by side (worker processes)."""

  def steps(self, batch: int, scale: int, count: int, work: int) -> None:
    """Batch number `batch` (from 0, in the order of the run) finished `count` more
    steps at `scale`, which are `work` work; counted as `work` here."""
    self.work(work)

  def out_of_memory(self, new_batch: int) -> None:
    """The device ran out of memory; the batch is now `new_batch`."""

  def dead(self, map_index: int, first_alive: int | None) -> None:
    """Map `map_index` was dead at the start; `first_alive` is the first scale with a
    non-zero objective, or None."""

  def failed(self, map_index: int, reason: str) -> None:
    """Map `map_index` failed (non-finite objective or image); nothing was written."""

  def damaged(self, map_index: int, filename: str) -> None:
    """Map `map_index` was finished, but its PNG `filename` is missing or damaged: it is
    rendered again."""

  def finished(self) -> None:
    """Every output of the piece of work is written."""


@dataclasses.dataclass(frozen=True)
class Workload:
  """A render's steps, as the time estimates count them.

  Attributes:
    steps: optimiser steps at each scale.
    step_work: the work of one step of one batch at each scale: the pixels the
      model sees (crops and resizes included) times the batch.
    batches: batches to render.
  """

  steps: tuple[int, ...]
  step_work: tuple[int, ...]
  batches: int

  @property
  def work(self) -> int:
    """The work of every batch."""
    return self.batches * sum(n * w for n, w in zip(self.steps, self.step_work))


class Estimator:
  """The time a render has left, from when each batch finished its steps.

  A pure model of a render's time; `ProgressEvents` feeds it the clock, a test
  feeds it any timeline. Its terms, as measured in this machine's traces
  (BENCHMARKS.md, "Time estimates"):
    * steps: every step of a batch at one scale takes the same time, measured on
      steps that follow a step of the same batch at the same scale. A scale not
      yet reached costs a + b * work, fitted to the scales measured: a is a
      step's fixed cost (dispatch, the optimiser, reporting), which dominates
      small steps (layer 0 at 56 px) and would make the larger scales look up
      to 4 times dearer if times were scaled by work alone.
    * transitions: a batch's first step at a scale waits for its previous scale's
      end and, in a process's first batch, for the compilation of the new
      scale's program: 3-4 s per scale at layer 24 on 2 cores, more than a
      --preview scale's 25 steps. Measured as that wait less one step, apart
      for the first `streams` batches (which compile) and the later ones.
    * streams: `streams` batches run side by side; the next batch waits for the
      first free one.
  `ready()` waits until the fit is worth extrapolating (scales measured that
  span twice the work, or up to the largest) and a compiling transition is seen;
  after LONG_S of steps, compiling and the fixed cost are small parts and it
  waits no longer.
  """

  # Steps measured before the first estimate, and at a scale before it is fitted:
  # a step time, not one step's jitter.
  MIN_STEPS = 10
  SCALE_STEPS = 5
  # Works the measured scales span before the fit is extrapolated.
  SPAN = 2.0
  # Single-scale renders: seconds of steps measured before the first estimate.
  MEASURE_S = 3.0
  # Seconds of steps after which compiling and a step's fixed cost are small
  # parts of the time left: the estimate no longer waits for the fit.
  LONG_S = 30.0

  def __init__(self, workload: Workload, start: float, streams: int = 1):
    self.workload, self.start, self.streams = workload, start, streams
    self.batch_state: dict[int, list] = {}  # batch: [last time, scale, steps done at it]
    self.first_step_at: float | None = None  # when the first batch's first step was done
    self.step_time_sum = [0.0] * len(workload.steps)
    self.step_count = [0] * len(workload.steps)
    self.transitions: tuple[list[float], list[float]] = ([], [])  # (cold, warm) seconds

  def steps(self, now: float, batch: int, scale: int, count: int) -> None:
    """Batch `batch` finished `count` steps at `scale` at time `now`."""
    state = self.batch_state.get(batch)
    if state is None:
      if self.first_step_at is None:
        self.first_step_at = now
      self.batch_state[batch] = [now, scale, count]
      return
    waited = now - state[0]
    if scale == state[1]:
      self.step_time_sum[scale] += waited
      self.step_count[scale] += count
      state[0], state[2] = now, state[2] + count
      return
    step = self.step_time(self.workload.step_work[scale])
    if step is not None:
      cold, warm = self.transitions
      (cold if self.cold(batch) else warm).append(max(waited - count * step, 0.0))
    self.batch_state[batch] = [now, scale, count]

  def cold(self, batch: int) -> bool:
    """Whether `batch` is one of the first side by side, which compile each scale."""
    return batch < self.streams

  def step_time(self, work: int) -> float | None:
    """Seconds of one step of one batch whose work is `work`: as measured at a scale of
    that work, else the fit, else the nearest scale's time scaled by work; None
    before any step is measured."""
    measured = [(self.workload.step_work[s], self.step_time_sum[s] / n, n)
                for s, n in enumerate(self.step_count) if n]
    for scale_work, seconds, _ in measured:
      if scale_work == work:
        return seconds
    line = cost_line([point for point in measured if point[2] >= self.SCALE_STEPS])
    if line is not None:
      return line[0] + line[1] * work
    if not measured:
      return None
    scale_work, seconds, _ = min(measured, key=lambda point: abs(math.log(point[0] / work)))
    return seconds * work / scale_work

  def transition(self, cold: bool) -> float:
    """Seconds a scale's start costs a cold or a warm batch beyond its step (the
    mean measured; 0 until one is)."""
    seen = self.transitions[0 if cold else 1]
    return sum(seen) / len(seen) if seen else 0.0

  def ready(self) -> bool:
    """Whether enough is measured for an estimate (see the class docstring)."""
    measured, seconds = sum(self.step_count), sum(self.step_time_sum)
    if measured < self.MIN_STEPS:
      return False
    if seconds >= self.LONG_S:
      return True
    if len(self.workload.steps) == 1:
      return seconds >= self.MEASURE_S
    works = [self.workload.step_work[s] for s, n in enumerate(self.step_count)
             if n >= self.SCALE_STEPS]
    fitted = bool(works) and (max(works) >= self.SPAN * min(works)
                              or max(works) >= max(self.workload.step_work))
    return fitted and bool(self.transitions[0])

  def left(self, now: float) -> float:
    """Seconds from `now` until the last batch's last step (once `ready()`)."""
    workload, last_scale = self.workload, len(self.workload.steps) - 1
    busy = []  # per started batch: seconds until its stream is free
    for batch, (last, scale, done) in self.batch_state.items():
      if scale == last_scale and done >= workload.steps[scale]:
        continue
      seconds = ((workload.steps[scale] - done) * self.step_time(workload.step_work[scale])
                 + self._seconds(workload, self.cold(batch), scale + 1))
      busy.append(max(seconds - (now - last), 0.0))
    waiting = [batch for batch in range(workload.batches) if batch not in self.batch_state]
    return self._finish_after(workload, busy, waiting)

  def run_time(self, workload: Workload) -> float:
    """Seconds that `workload` would take a new command on this machine: this run's wait
    for its first step (the workers' start-up, the first scale's compilation) and
    then its steps, at the speeds and transitions measured here (once `ready()`)."""
    start_up = (self.first_step_at if self.first_step_at is not None else self.start) - self.start
    return start_up + self._finish_after(workload, [], list(range(workload.batches)))

  def _seconds(self, workload: Workload, cold: bool, first: int) -> float:
    """A batch's seconds for its scales from `first` on, their transitions included."""
    transition = self.transition(cold)
    return sum(workload.steps[s] * self.step_time(workload.step_work[s])
               + (transition if s else 0.0) for s in range(first, len(workload.steps)))

  def _finish_after(self, workload: Workload, busy: list[float], waiting: list[int]) -> float:
    """When the last of the `waiting` batches of `workload` is done, each starting on the
    first free stream; the streams are free after `busy` seconds (idle ones at once)."""
    free = busy + [0.0] * max(self.streams - len(busy), 0)
    heapq.heapify(free)
    whole = {cold: self._seconds(workload, cold, 0) for cold in (True, False)}
    for batch in waiting:
      heapq.heappush(free, heapq.heappop(free) + whole[self.cold(batch)])
    return max(free, default=0.0)


def cost_line(points: list[tuple[int, float, int]]) -> tuple[float, float] | None:
  """(a, b) of seconds = a + b * work, fitted by least squares to (work, seconds, steps)
  points weighted by their steps, with a, b >= 0 (a = 0 refitted through the
  origin); None unless the points span `Estimator.SPAN` times the work, or if the
  seconds fall as the work grows."""
  if not points or max(p[0] for p in points) < Estimator.SPAN * min(p[0] for p in points):
    return None
  weight = sum(n for _, _, n in points)
  mean_work = sum(w * n for w, _, n in points) / weight
  mean_seconds = sum(t * n for _, t, n in points) / weight
  slope = (sum(n * (w - mean_work) * (t - mean_seconds) for w, t, n in points)
           / sum(n * (w - mean_work) ** 2 for w, _, n in points))
  if slope <= 0:
    return None
  fixed = mean_seconds - slope * mean_work
  if fixed < 0:
    return 0.0, sum(n * w * t for w, t, n in points) / sum(n * w * w for w, _, n in points)
  return fixed, slope


def progress_bar():
  """A rich progress bar on stderr. In a notebook rich draws it as a widget, which needs
  ipywidgets; without it rich would warn "install ipywidgets" and show nothing, so
  there the bar is plain text (its final state, and every note as a line)."""
  import importlib.util

  from rich.console import Console
  from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                             TimeElapsedColumn, TimeRemainingColumn)
  from rich.text import Text

  console = Console(stderr=True)
  if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
    console = Console(stderr=True, force_jupyter=False)

  class TimeLeftColumn(TimeRemainingColumn):
    """rich's time left (from the recent rate), except for a render once `Estimator` is
    ready (the task's `left` field), which shows the estimator's."""

    def render(self, task):
      left = task.fields.get("left")
      if left is None or task.finished:
        return super().render(task)
      minutes, seconds = divmod(int(left), 60)
      hours, minutes = divmod(minutes, 60)
      return Text(f"{hours:d}:{minutes:02d}:{seconds:02d}", style="progress.remaining")

  return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), TimeLeftColumn(), console=console)


class ProgressEvents(Events):
  """Prints what happens on stderr: notes as lines, each piece of work as a bar (the
  bar starts with the first piece; `with ProgressEvents() as events:` stops it).

  A render's bar is over its work (steps times pixels) and completes only once
  every output is written; its time left is `Estimator`'s, and once that is
  ready a line says it and what --preview would take.
  """

  # The bar's time left is recomputed at most this often (seconds): a sweep of
  # thousands of batches reports a step every few milliseconds.
  UPDATE_S = 0.5
  # A render with less than this left (seconds) gets no estimate line.
  SAY_S = 5.0

  def __init__(self, clock=time.perf_counter):
    self.clock = clock  # seconds; a test gives its own, so that no test waits on time
    self.bar = None
    self.task = None
    self.plan_ = None
    self.estimator = None
    # Worker processes' steps arrive on one thread per worker.
    self.lock = threading.Lock()

  def __enter__(self) -> "ProgressEvents":
    return self

  def __exit__(self, *exc) -> None:
    if self.bar is not None:
      self.bar.stop()

  def note(self, line: str) -> None:
    """A line on stderr (above the bar), never wrapped, so that logs keep it whole."""
    if self.bar is not None:
      self.bar.console.print(line, soft_wrap=True, markup=False, highlight=False)
    else:
      import sys

      print(line, file=sys.stderr, flush=True)

  def begin(self, label: str, total: int | None = None) -> None:
    if self.bar is None:
      self.bar = progress_bar()
      self.bar.start()
    self.task = self.bar.add_task(label, total=total)
    self.plan_, self.estimator, self.estimated_at = None, None, None

  def plan(self, plan) -> None:
    self.plan_ = plan
    self.estimator = Estimator(plan.workload, self.clock())
    if plan.skipped:
      where = f" in {plan.out}" if plan.out is not None else ""
      self.note(f"{plural(plan.skipped, 'map')} already rendered{where}, skipped")
    # One more unit for writing: the bar completes when the outputs are written.
    self.bar.update(self.task, total=plan.work + 1)

  def side_by_side(self, batches: int) -> None:
    with self.lock:
      if self.estimator is not None:
        self.estimator.streams = batches

  def work(self, amount: int) -> None:
    self.bar.advance(self.task, amount)

  def steps(self, batch: int, scale: int, count: int, work: int) -> None:
    with self.lock:
      self.bar.advance(self.task, work)
      if self.estimator is None:
        return
      now = self.clock()
      self.estimator.steps(now, batch, scale, count)
      if not self.estimator.ready() or (self.estimated_at is not None
                                        and now - self.estimated_at < self.UPDATE_S):
        return
      left = self.estimator.left(now)
      self.bar.update(self.task, left=left)
      if self.estimated_at is None and left >= self.SAY_S:
        self.note(self._estimate_line(left))
      self.estimated_at = now

  def _estimate_line(self, left: float) -> str:
    plan = self.plan_
    line = (f"≈ {duration(left)} left for {plural(plan.todo, 'map')} ({plan.steps} steps, "
            f"up to {plan.largest_side} px) on this machine")
    if plan.preview is not None and plan.preview.work < plan.work:
      line += f"; --preview would take ≈ {duration(self.estimator.run_time(plan.preview))}"
    return line

  def out_of_memory(self, new_batch: int) -> None:
    # The plan's batches no longer hold: no estimate rather than a wrong one (the bar
    # goes back to rich's rate).
    with self.lock:
      self.estimator = None
      self.bar.update(self.task, left=None)
    self.note(f"out of device memory: batch halved to {new_batch}")

  def dead(self, map_index: int, first_alive: int | None) -> None:
    fate = "never came alive" if first_alive is None else f"came alive at scale {first_alive}"
    self.note(f"map {map_index} is dead at the start (objective 0, no gradient): only the "
              f"weight decay moves its image, towards the ImageNet mean colour; it {fate}")

  def failed(self, map_index: int, reason: str) -> None:
    self.note(f"map {map_index} failed: {reason}; no image written")

  def damaged(self, map_index: int, filename: str) -> None:
    self.note(f"warning: {filename} (map {map_index}) is missing or not the PNG its record "
              "made; rendering it again")

  def finished(self) -> None:
    task = self.bar.tasks[self.task]
    if task.total is not None:
      self.bar.update(self.task, completed=task.total)


class CallbackEvents(Events):
  """Hands `callback(done, total)` the current piece of work's progress (a render's
  work, or a folder's images), as a fraction's parts; each piece starts from 0."""

  def __init__(self, callback):
    self.callback, self.total, self.done = callback, 0, 0

  def begin(self, label: str, total: int | None = None) -> None:
    self.total, self.done = total or 0, 0

  def plan(self, plan) -> None:
    self.total = plan.work

  def work(self, amount: int) -> None:
    self.done += amount
    self.callback(self.done, self.total)

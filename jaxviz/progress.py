"""What a command reports as it goes, and how people see it: `Events`, a rich progress
bar with estimates (`ProgressEvents`), a callback (`CallbackEvents`), counted nouns.

The application layer (`jaxviz.app`) tells an `Events` what happens; the CLI and
the Python API (`jaxviz.render(..., progress=True)`, which notebooks show) pass
the same `ProgressEvents`, so both faces print the same things. This module
imports nothing heavy.
"""

from __future__ import annotations

import time


def plural(count: int, noun: str) -> str:
  """'1 map', '2 maps'."""
  return f"{count} {noun}{'' if count == 1 else 's'}"


def duration(seconds: float) -> str:
  """'40 s', '9 min', '2.5 h'."""
  if seconds < 90:
    return f"{seconds:.0f} s"
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


def progress_bar():
  """A rich progress bar on stderr. In a notebook rich draws it as a widget, which needs
  ipywidgets; without it rich would warn "install ipywidgets" and show nothing, so
  there the bar is plain text (its final state, and every note as a line)."""
  import importlib.util

  from rich.console import Console
  from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                             TimeElapsedColumn, TimeRemainingColumn)

  console = Console(stderr=True)
  if console.is_jupyter and importlib.util.find_spec("ipywidgets") is None:
    console = Console(stderr=True, force_jupyter=False)
  return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console)


class ProgressEvents(Events):
  """Prints what happens on stderr: notes as lines, each piece of work as a bar (the
  bar starts with the first piece; `with ProgressEvents() as events:` stops it).

  A render's bar is over its work (steps times pixels) and completes only once
  every output is written; once the speed is measured, a line estimates the time
  left and what --preview would take.
  """

  # The estimate waits for this much measured work after the first step (which
  # compiles), so that it is the machine's speed, not the compiler's.
  MEASURE_S = 3.0

  def __init__(self, clock=time.perf_counter):
    self.clock = clock  # seconds; a test gives its own, so that no test waits on time
    self.bar = None
    self.task = None
    self.plan_ = None

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
    self.plan_, self.first, self.estimated = None, None, False

  def plan(self, plan) -> None:
    self.plan_ = plan
    if plan.skipped:
      where = f" in {plan.out}" if plan.out is not None else ""
      self.note(f"{plural(plan.skipped, 'map')} already rendered{where}, skipped")
    # One more unit for writing: the bar completes when the outputs are written.
    self.bar.update(self.task, total=plan.work + 1)

  def work(self, amount: int) -> None:
    self.bar.advance(self.task, amount)
    if self.plan_ is None:
      return
    now, done = self.clock(), self.bar.tasks[self.task].completed
    if self.first is None:
      self.first = (now, done)
      return
    elapsed, measured = now - self.first[0], done - self.first[1]
    if not self.estimated and elapsed >= self.MEASURE_S and measured > 0:
      self.estimated = True
      rate = measured / elapsed
      plan = self.plan_
      left = (plan.work - done) / rate
      line = (f"≈ {duration(left)} left for {plural(plan.todo, 'map')} ({plan.steps} steps, "
              f"up to {plan.largest_side} px) on this machine")
      if plan.preview_work and plan.preview_work < plan.work:
        line += f"; --preview would take ≈ {duration(plan.preview_work / rate)}"
      self.note(line)

  def out_of_memory(self, new_batch: int) -> None:
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

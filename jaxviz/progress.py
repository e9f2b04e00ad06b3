"""Progress as people see it: a rich bar over the work, estimates, and counted nouns.

The CLI and the Python API (`jaxviz.render(..., progress=True)`, which notebooks
show) print the same things through `ProgressEvents`.
"""

from __future__ import annotations


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


def progress_bar():
  """A rich progress bar on stderr (rich also draws it in notebooks)."""
  from rich.console import Console
  from rich.progress import (BarColumn, Progress, TaskProgressColumn, TextColumn,
                             TimeElapsedColumn, TimeRemainingColumn)

  return Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True))


class ProgressEvents:
  """Prints what rendering reports: a bar over the work (steps times pixels, so the
  large late scales weigh what they cost) that completes only once every output is
  written, and, once the speed is measured, an estimate of the time left and of
  what --preview would take."""

  # The estimate waits for this much measured work after the first step (which
  # compiles), so that it is the machine's speed, not the compiler's.
  MEASURE_S = 3.0

  def __init__(self, progress, label: str, out=None):
    self.progress, self.out = progress, out
    self.task = progress.add_task(label, total=None)
    self.plan_ = None
    self.first = None
    self.estimated = False

  def say(self, line: str) -> None:
    """A line on stderr above the bar, never wrapped (so that logs keep it whole)."""
    self.progress.console.print(line, soft_wrap=True)

  def plan(self, plan):
    self.plan_ = plan
    if plan.skipped:
      where = f" in {self.out}" if self.out is not None else ""
      self.say(f"{plural(plan.skipped, 'map')} already rendered{where}, skipped")
    # One more unit for writing: the bar completes when the outputs are written.
    self.progress.update(self.task, total=plan.work + 1)

  def work(self, amount):
    import time

    self.progress.advance(self.task, amount)
    now, done = time.perf_counter(), self.progress.tasks[self.task].completed
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
      self.say(line)

  def out_of_memory(self, new_batch):
    self.say(f"out of device memory: batch halved to {new_batch}")

  def dead(self, map_index, first_alive):
    fate = "never came alive" if first_alive is None else f"came alive at scale {first_alive}"
    self.say(f"map {map_index} is dead at the start (objective 0, no gradient): only the "
             f"weight decay moves its image, towards the ImageNet mean colour; it {fate}")

  def failed(self, map_index, reason):
    self.say(f"map {map_index} failed: {reason}; no image written")

  def damaged(self, map_index, filename):
    self.say(f"warning: {filename} (map {map_index}) is missing or not the PNG its record "
             "made; rendering it again")

  def finished(self):
    task = self.progress.tasks[self.task]
    if task.total is not None:
      self.progress.update(self.task, completed=task.total)




class CallbackEvents:
  """Hands `callback(done, total)` the work done so far, as a fraction's parts."""

  def __init__(self, callback):
    self.callback, self.total, self.done = callback, 0, 0

  def plan(self, plan):
    self.total = plan.work

  def work(self, amount):
    self.done += amount
    self.callback(self.done, self.total)

  def out_of_memory(self, new_batch):
    pass

  def dead(self, map_index, first_alive):
    pass

  def failed(self, map_index, reason):
    pass

  def damaged(self, map_index, filename):
    pass

  def finished(self):
    pass

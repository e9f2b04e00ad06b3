"""Short reprs for what the API returns: a notebook shows an outcome without dumping
its arrays (a probe's photo is 150,528 numbers).

Conventions:
  * An array shows as its shape and dtype, a long list or dict as its first
    items and its length, a long string cut; nested results show their own
    short repr. No JAX here (an array is anything with `shape` and `dtype`).
"""

from __future__ import annotations

import dataclasses

MAX_ITEMS = 3
MAX_TEXT = 60


def summary(value) -> str:
  """One short line for `value`."""
  if hasattr(value, "shape") and hasattr(value, "dtype") and not isinstance(value, type):
    return f"<array {tuple(value.shape)} {value.dtype}>"
  if isinstance(value, ShortRepr):
    return repr(value)
  if isinstance(value, dict):
    items = [f"{summary(k)}: {summary(v)}" for k, v in list(value.items())[:MAX_ITEMS]]
    more = f", ... ({len(value)} items)" if len(value) > MAX_ITEMS else ""
    return "{" + ", ".join(items) + more + "}"
  if isinstance(value, (list, tuple)) and len(value) > MAX_ITEMS:
    items = ", ".join(summary(v) for v in value[:MAX_ITEMS])
    return f"[{items}, ... ({len(value)} items)]"
  if isinstance(value, (list, tuple)):
    return repr(type(value)(summary(v) for v in value)).replace("'", "")
  text = repr(value)
  return text if len(text) <= MAX_TEXT else text[:MAX_TEXT - 3] + "..."


class ShortRepr:
  """A dataclass's repr with each field summarised (declare it with `repr=False`)."""

  def __repr__(self) -> str:
    fields = (field for field in dataclasses.fields(self) if field.repr)
    return f"{type(self).__name__}(" + ", ".join(
        f"{field.name}={summary(getattr(self, field.name))}" for field in fields) + ")"

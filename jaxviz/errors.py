"""The one exception type users see.

Library code raises `JaxvizError` for anything caused by the user's input (a bad
layer name, an unreadable file, wrong weights). The CLI prints its message as a
single line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class JaxvizError(Exception):
  """A user-facing error: the message alone must tell the user what to fix."""


class SettingError(JaxvizError):
  """A setting with a wrong value, named as the library names it (`size0`, `lr`).

  The message reads "<setting> <problem>"; the CLI shows the setting as its flag
  ("--size0 15 is below 16, ...").
  """

  def __init__(self, setting: str, problem: str):
    super().__init__(f"{setting} {problem}")
    self.setting = setting
    self.problem = problem

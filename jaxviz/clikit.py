"""The command line's plumbing on typer: usage lines, one-line errors, JSON documents,
and option groups declared once.

`jaxviz.cli` declares the options and the commands with these. User errors
print one `error:` line on stderr and exit 1 (a setting named by its flag);
Ctrl-C exits 130; neither prints a traceback. With --json, stdout holds one JSON
document even when a command fails.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import inspect
import re
from typing import Annotated, Any, Callable, Optional

import typer

from jaxviz.errors import JaxvizError, SettingError


class HelpWithoutType:
  """`--help` without the `<bool>` typer shows after it."""

  def get_help_option(self, ctx):
    option = super().get_help_option(ctx)
    if option is not None:
      option.metavar = ""
    return option


class Command(HelpWithoutType, typer.core.TyperCommand):
  """typer's command with the usual usage line: positionals as `PHOTO`, where typer
  writes required ones as `{PHOTO}`."""

  def collect_usage_pieces(self, ctx):
    return [re.sub(r"^\{(.*)\}", r"\1", piece) for piece in super().collect_usage_pieces(ctx)]


class Group(HelpWithoutType, typer.core.TyperGroup):
  pass


# Errors.

def flag(setting: str) -> str:
  """A setting's name as its command-line flag: weight_decay -> --weight-decay."""
  return "--" + setting.replace("_", "-")


def _fail(message: str, code: int = 1) -> None:
  typer.echo(f"error: {message}", err=True)
  raise typer.Exit(code)


# Whether the running command has printed its JSON result (see `user_errors`).
_json_printed = contextvars.ContextVar("jaxviz_json_printed", default=False)


def echo_json(data) -> None:
  from jaxviz import fileio

  typer.echo(fileio.json_text(data))
  _json_printed.set(True)


def user_errors(command):
  """Turns JaxvizError and Ctrl-C into a one-line message and a non-zero exit.

  With --json, stdout still holds one JSON document: the command's result if
  it printed one before failing, else {"error": message}.
  """

  @functools.wraps(command)
  def wrapper(*args, **kwargs):
    printed = _json_printed.set(False)
    try:
      return command(*args, **kwargs)
    except SettingError as error:
      message, code = f"{flag(error.setting)} {error.problem}", 1
    except JaxvizError as error:
      message, code = str(error), 1
    except KeyboardInterrupt:
      message, code = "interrupted", 130
    finally:
      json_done = _json_printed.get()
      _json_printed.reset(printed)
    if kwargs.get("as_json") and not json_done:
      echo_json({"error": message})
    _fail(message, code)

  return wrapper


@dataclasses.dataclass(frozen=True)
class Opt:
  """One option of a group: its setting name, type, default and help."""

  name: str
  type: Any
  default: Any
  help: str
  short: str | None = None


def with_options(parameter: str, build: Callable[..., Any], options: tuple[Opt, ...],
                 panel: str):
  """Replaces the command's `parameter` by the group's options (shown under `panel`
  in --help) and passes the command `build(**those options)` in its place."""

  def decorate(command):
    signature = inspect.signature(command, eval_str=True)
    def option(opt: Opt):
      on, switch = flag(opt.name), opt.type in (bool, Optional[bool])
      names = [f"{on}/--no-{on[2:]}" if switch else on] + ([opt.short] if opt.short else [])
      return typer.Option(*names, help=opt.help, rich_help_panel=panel,
                          metavar="" if switch else None)

    added = [inspect.Parameter(opt.name, inspect.Parameter.KEYWORD_ONLY, default=opt.default,
                               annotation=Annotated[opt.type, option(opt)])
             for opt in options]
    parameters = []
    for existing in signature.parameters.values():
      if existing.name == parameter:
        parameters.extend(added)
      else:
        parameters.append(existing.replace(kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(command)
    def wrapper(**kwargs):
      built = build(**{opt.name: kwargs.pop(opt.name) for opt in options})
      return command(**kwargs, **{parameter: built})

    wrapper.__signature__ = signature.replace(parameters=parameters)
    # The annotations as objects: typer evaluates string ones in this module's globals,
    # not in those of the module that declared the command.
    wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
    del wrapper.__wrapped__
    return wrapper

  return decorate

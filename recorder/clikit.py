"""What every rt-blackbox command shares: the error-to-exit-code contract and common options.

Errors from the :mod:`recorder.errors` tree and click usage errors become one line on stderr
and exit code 2; nothing else prints a traceback to the user.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from recorder.errors import BlackboxError

T = TypeVar("T")


def main_wrapper(group: click.Group, prog_name: str) -> Callable[[], None]:
    """Return a console-script entry point running ``group`` under the exit-code contract."""

    def main(argv: list[str] | None = None) -> None:
        try:
            rv = group.main(args=argv, prog_name=prog_name, standalone_mode=False)
        except click.exceptions.Abort:
            click.echo(f"{prog_name}: aborted", err=True)
            sys.exit(130)
        except click.ClickException as err:
            msg = err.format_message()
            ctx = getattr(err, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            click.echo(f"{prog_name}: error: {msg}{hint}", err=True)
            sys.exit(2)
        except BlackboxError as err:
            click.echo(f"{prog_name}: error: {err}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)
        sys.exit(rv if isinstance(rv, int) else 0)

    return main


def store_option(required: bool = True) -> Callable:
    """``--store DIR``: the store directory, shared by every command."""
    return click.option(
        "--store",
        "store",
        required=required,
        type=click.Path(file_okay=False, path_type=str),
        help="Store directory (created by rt-record when missing).",
    )


def format_option(choices: tuple[str, ...], default: str) -> Callable:
    """``--format``: output format of a command that prints data."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=default,
        show_default=True,
        help="Output format.",
    )


async def until_signalled(run: Callable[..., Awaitable[T]], **kwargs) -> T:
    """Await ``run(stop=event, **kwargs)`` with SIGINT/SIGTERM setting ``event``: a graceful stop.

    The long-running commands (proxy, subscribe, serve) stop this way on Ctrl-C or ``kill``:
    they close their connections, commit what they recorded and exit 0.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        return await run(stop=stop, **kwargs)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)

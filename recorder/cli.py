"""``rt-record``: record Realtime frames and log lines into a store (thin click shell)."""

from __future__ import annotations

import json
import signal
import sys
import threading

import click

from recorder.clikit import format_option, main_wrapper, store_option
from recorder.logfiles import record_logs
from recorder.logpresets import PRESET_NAMES
from recorder.proxy import proxy_command
from recorder.store import backfill_derived
from recorder.subscribe import subscribe_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rt-blackbox")
def cli() -> None:
    """Record Supabase Realtime traffic and application logs into an append-only store.

    \b
    Example:
      rt-record logs realtime.log bot.log notification.log --store ./store
    """


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def _progress_factory(quiet: bool):
    if quiet or not sys.stderr.isatty():
        return None
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    def factory(total: int):
        progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        )
        progress.start()
        task = progress.add_task("ingesting", total=total)

        def advance(n: int) -> None:
            progress.advance(task, n)
            if progress.finished:
                progress.stop()

        return advance

    return factory


@cli.command("logs")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=str))
@store_option()
@click.option("--source", help="Stream name for these files (default: each file's stem, realtime.log -> realtime).")
@click.option(
    "--preset",
    type=click.Choice(PRESET_NAMES),
    default="auto",
    show_default=True,
    help="How to parse the files; auto picks one per file from its first lines.",
)
@click.option("--pattern", help="Python logging format string of the files (python preset).")
@click.option("--follow", is_flag=True, help="Keep reading as files grow; survives rotation. Stop with Ctrl-C.")
@click.option("--tz", help="Zone of timestamps without one (default: the machine's zone).")
@click.option("--date", help="Date (YYYY-MM-DD) for Realtime server lines that carry only HH:MM:SS.mmm.")
@click.option("--quiet", is_flag=True, help="No progress bar and no summary.")
@format_option(("text", "json"), "text")
def logs_command(paths, store, source, preset, pattern, follow, tz, date, quiet, fmt):
    """Record log files (Python logging, JSON lines, Realtime server, Supabase exports).

    Importing a file again records only what is new; lines no preset matches are kept
    unparsed (parsed = false), never dropped.

    \b
    Examples:
      rt-record logs realtime.log bot.log notification.log --store ./store
      rt-record logs server.log --preset realtime-server --date 2026-11-24 --store ./store
      rt-record logs app.log --pattern '%(asctime)s %(levelname)s [%(name)s] %(message)s' --store ./store
      rt-record logs realtime.log bot.log --follow --tz Europe/Berlin --store ./store
    """
    stop = _stop_on_signals() if follow else None
    say = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    summaries = record_logs(
        list(paths),
        store,
        source=source,
        preset=preset,
        pattern=pattern,
        follow=follow,
        tz=tz,
        date=date,
        stop=stop,
        say=say,
        progress_factory=_progress_factory(quiet),
    )
    if fmt == "json":
        click.echo(json.dumps([s.as_dict() for s in summaries], indent=2))
    elif not quiet:
        for s in summaries:
            extra = []
            if s.unparsed:
                extra.append(f"{s.unparsed} unparsed")
            if s.no_time:
                extra.append(f"{s.no_time} without a time" + ("" if date else " (try --date or --tz)"))
            tail = f" ({', '.join(extra)})" if extra else ""
            click.echo(f"{s.path}: {s.records} records, {s.bytes} bytes, preset {s.preset or '-'}{tail}")
            for note in s.notes:
                click.echo(f"  note: {note}")
    return 0


@cli.command("derive")
@store_option()
def derive_command(store):
    """Write the derived tables of the parts that lack them (stores recorded by older versions).

    A recorder writes them with each part it commits: the log lines the analyzer understands
    and the postgres_changes flattened, so that rt-analyze reads them instead of parsing every
    payload again. Reports are the same with or without them, only faster.

    \b
    Example:
      rt-record derive --store ./store
    """
    parts = backfill_derived(store)
    click.echo(f"{store}: derived tables written for {parts} part{'' if parts == 1 else 's'}")
    return 0


cli.add_command(proxy_command)
cli.add_command(subscribe_command)
main = main_wrapper(cli, "rt-record")

if __name__ == "__main__":
    main()

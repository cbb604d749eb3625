"""``rt-replay``: replay a recording through the payload validator (``validate``), write per-table
record schemas (``schema``); ``serve`` (replay to a client) joins this group. Thin click shell over
:mod:`analyzer.validate`.
"""

from __future__ import annotations

import json
import sys

import click

from analyzer.validate import (
    ENGINES,
    ValidationResult,
    check_relation,
    parse_columns,
    read_columns_file,
    record_schema,
    validate_store,
    write_record_schema,
)
from recorder.clikit import format_option, main_wrapper, store_option
from recorder.errors import ConfigError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rt-blackbox")
def cli() -> None:
    """Replay a recording: through the payload validator, or to a Realtime client.

    \b
    Example:
      rt-replay validate --store ./store
    """


@cli.command(
    "validate",
    help="""Check every recorded server payload against the JSON Schemas of its event.

Replays the payload of each server-to-client frame (postgres_changes, broadcast, presence_state,
presence_diff, system, phx_reply, and frames that could not be decoded) through the validator,
prints pass/fail counts per event and table and the first failures, and writes one verdict per
frame to STORE/verdicts/verdicts.parquet (replacing the previous run; the recording itself is
never changed). Exit 0 all valid, 1 some invalid, 2 usage or input error, 3 the engines
disagreed (--engine both).

\b
Examples:
  rt-replay validate --store ./store
  rt-replay validate --store ./store --schema ./schemas --engine both --format json
""",
)
@store_option()
@click.option(
    "--schema",
    "schema_dir",
    type=click.Path(path_type=str),
    help="Directory of extra schemas: <schema>.<table>.json for data.record of that table "
    "(see 'rt-replay schema'), <event>.json to replace a built-in event schema.",
)
@click.option(
    "--engine",
    default="fast",
    show_default=True,
    metavar="fast|reference|both",
    help="fast: jsonschema-rs; reference: jsonschema; both: run both and report any disagreement.",
)
@click.option("--failures", "max_failures", default=10, show_default=True, type=click.IntRange(0),
              help="How many failures to list (the earliest).")
@click.option("--no-write", is_flag=True, help="Only check; do not write STORE/verdicts.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(0),
              help="Processes that check the frames (Linux; 0: one per CPU). The verdicts are the same.")
@format_option(("text", "json"), "text")
def validate_command(store, schema_dir, engine, max_failures, no_write, workers, fmt) -> int:
    if engine != "both" and engine not in ENGINES:
        raise ConfigError(f"--engine {engine!r}: expected one of {', '.join(sorted(ENGINES))}, both")
    result = validate_store(store, schema_dir, engine, failures=max_failures, write=not no_write, workers=workers)
    if fmt == "json":
        click.echo(json.dumps(result.as_json(), indent=2, ensure_ascii=False))
    else:
        render_text(result, sys.stdout)
    return result.exit_code


def render_text(result: ValidationResult, out) -> None:
    """Counts per event and table (a rich table), then the first failures and disagreements."""
    from rich.console import Console
    from rich.table import Table

    engines = " and ".join(f"{lib} ({name})" for name, lib in result.engines.items())
    console = Console(file=out, width=max(100, _needed_width(result)), highlight=False, soft_wrap=True)
    console.print(
        f"checked {result.checked} payloads with {engines}: {result.valid} valid, {result.invalid} invalid, "
        f"{result.skipped} frames skipped",
        markup=False,
    )
    if result.table_schemas:
        console.print(f"record schemas: {', '.join(result.table_schemas)}", markup=False)
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    table.add_column("event")
    table.add_column("table")
    for name in ("checked", "valid", "invalid"):
        table.add_column(name, justify="right")
    for row in result.by_event():
        table.add_row(
            row["event"] or "(undecoded)", row["relation"] or "-", str(row["checked"]), str(row["valid"]),
            str(row["invalid"]), style="red" if row["invalid"] else None,
        )  # fmt: skip
    console.print(table)
    if result.failures:
        shown = len(result.failures)
        console.print(f"first {shown} of {result.invalid} failures:", markup=False)
        for f in result.failures:
            where = f.event or "?"
            if f.relation:
                where += f" {f.relation}"
            console.print(
                f"  session {f.session_id} seq {f.seq} {where} {f.error_path or '(payload)'}: {f.error}",
                markup=False,
            )
    if result.disagreements:
        console.print(f"{result.disagreements} disagreements between the engines:", markup=False)
        for d in result.disagreeing:
            console.print(
                f"  session {d.session_id} seq {d.seq} {d.event or '?'}: fast {_said(d.fast)}, "
                f"reference {_said(d.reference)}",
                markup=False,
            )
    if result.verdicts:
        console.print(f"verdicts: {result.verdicts} (run {result.run})", markup=False)


def _said(verdict: dict) -> str:
    if verdict.get("valid"):
        return "valid"
    return f"{verdict.get('error_path') or '(payload)'}: {verdict.get('error')}"


def _needed_width(result: ValidationResult) -> int:
    widths = [len(f"{r['event']} {r['relation']}") + 40 for r in result.by_event()]
    return max(widths, default=0)


@cli.command(
    "schema",
    help="""Write the JSON Schema of a table's record, for 'rt-replay validate --schema DIR'.

Columns are name:type[:not null], comma-separated (Postgres type names: int8, numeric(10,2),
text, uuid, timestamptz, jsonb, text[] ...), or a CSV/JSON file with column_name, udt_name (or
data_type) and is_nullable, e.g. exported from information_schema.columns. Nullable columns also
allow null; every column is required unless --required not-null.

\b
Examples:
  rt-replay schema --table public.orders --columns 'id:int8:not null,total:numeric,note:text' --schema ./schemas
  rt-replay schema --table public.orders --columns-file orders_columns.csv > public.orders.json
""",
)
@click.option("--table", "relation", required=True, help="<schema>.<table>, e.g. public.orders.")
@click.option("--columns", "columns_spec", help="name:type[:not null],... (see above).")
@click.option("--columns-file", type=click.Path(dir_okay=False, path_type=str), help="CSV or JSON list of columns.")
@click.option("--required", "required", type=click.Choice(["all", "not-null"]), default="all", show_default=True,
              help="Which columns the record must carry.")
@click.option("--schema", "schema_dir", type=click.Path(file_okay=False, path_type=str),
              help="Write DIR/<schema>.<table>.json instead of printing the schema.")
def schema_command(relation, columns_spec, columns_file, required, schema_dir) -> None:
    check_relation(relation)
    if (columns_spec is None) == (columns_file is None):
        raise click.UsageError("give exactly one of --columns and --columns-file")
    columns = parse_columns(columns_spec) if columns_spec is not None else read_columns_file(columns_file)
    schema = record_schema(relation, columns, required)
    if schema_dir is None:
        click.echo(json.dumps(schema, indent=2, ensure_ascii=False))
        return
    path = write_record_schema(relation, schema, schema_dir)
    click.echo(f"wrote {path} ({len(columns)} columns)", err=True)


from recorder.replay import serve_command  # noqa: E402 - the playback server lives with the recorder

cli.add_command(serve_command)
main = main_wrapper(cli, "rt-replay")

if __name__ == "__main__":
    main()

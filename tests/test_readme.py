"""The README's examples, run as written in a scratch directory (docs are tested).

Every fenced ``sh`` block runs, in order, as one bash script with ``set -e`` (a command that
may exit non-zero says so itself with ``|| test $? -eq N``); a ``python`` or ``toml`` block
whose first line is ``# NAME.ext`` is written to that file first. ``console`` blocks are the
set-up commands (``make run``, ``make test``): CI runs ``make test`` and tests/test_demo.py
runs ``make run``. The fixed ports of the README are swapped for free ones.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```\n", re.S | re.M)
FILE_NAME = re.compile(r"#\s*([\w.-]+\.(?:py|toml))\b")
PORT = re.compile(r"(?:127\.0\.0\.1:|listening )(40\d\d)\b")


@dataclass
class Block:
    info: str
    body: str
    line: int

    @property
    def file_name(self) -> str | None:
        first = self.body.splitlines()[0] if self.body else ""
        match = FILE_NAME.match(first)
        return match.group(1) if match else None


def blocks(text: str) -> list[Block]:
    return [Block(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_code_block_is_run_or_written() -> None:
    """No example escapes the test: each block is a script, a file, the set-up commands or a layout."""
    for block in blocks(README.read_text()):
        if block.info == "sh":
            continue
        if block.info in ("python", "toml"):
            assert block.file_name, f"README.md:{block.line}: a {block.info} block needs '# NAME.{block.info[:2]}...' first"
        elif block.info == "console":
            assert set(re.findall(r"^make (\w+)", block.body, re.M)) <= {"run", "test"}, block.line
        else:
            assert block.info == "" and "/" in block.body and "$" not in block.body, f"README.md:{block.line}"


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> tuple[Path, str]:
    work = tmp_path_factory.mktemp("readme")
    (work / "fixtures").symlink_to(ROOT / "fixtures")
    text = README.read_text()
    ports: dict[str, str] = {}
    text = PORT.sub(lambda m: m.group(0).replace(m.group(1), ports.setdefault(m.group(1), str(free_port()))), text)
    script = ["set -euo pipefail"]
    for block in blocks(text):
        if block.file_name:
            (work / block.file_name).write_text(block.body)
        elif block.info == "sh":
            script.append(f"echo '>>> README.md:{block.line}'")
            script.append(block.body)
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.pop("PYTHONPATH", None)
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)], cwd=work, env=env, capture_output=True, text=True, timeout=300
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"the README's commands failed (exit {result.returncode}):\n{output[-6000:]}"
    return work, result.stdout


def output_of(out: str, command: str) -> str:
    """The standard output of the README block that contains ``command``."""
    text = README.read_text()
    for block in blocks(text):
        if block.info == "sh" and command in block.body:
            return out.split(f">>> README.md:{block.line}\n", 1)[1].split(">>> README.md:", 1)[0]
    raise AssertionError(f"no README block runs {command!r}")


def test_tour_records_logs_and_reports_the_incident_day(tour) -> None:
    work, _ = tour
    import json

    report = json.loads((work / "day.json").read_text())
    causes = {i["cause"] for i in report["incidents"]}
    assert {"payload_missing", "network"} <= causes
    assert report["escalate"] is True
    ticket = (work / "ticket.md").read_text()
    assert ticket.startswith("#") and "payload_missing" in ticket


def test_tour_proxies_the_bot_and_replays_with_faults(tour) -> None:
    work, out = tour
    changes = re.findall(r"^change: orders (.*)$", out, re.M)
    assert changes[:3] == ["{'id': 5000, 'status': 'new'}", "{'id': 5001, 'status': 'new'}", "{'id': 5002, 'status': 'new'}"]
    assert changes[3:6] == ["None", "None", "None"]  # corrupt=1,as:null: every record null
    faulty = output_of(out, "rt-analyze report --store faulty")
    assert re.search(r"^\s*inc-\d+ invalid_payload/", faulty, re.M), faulty
    assert "/data/record" in faulty
    html = (work / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    # the apikey's signature never reached the stores
    for store in ("live", "faulty"):
        for path in (work / store).rglob("*"):
            if path.is_file():
                assert b"demo-signature" not in path.read_bytes(), path


def test_tour_pytest_fixture_example_passes(tour) -> None:
    _, out = tour
    assert re.search(r"^1 passed", out, re.M), out[-3000:]


def test_reference_examples(tour) -> None:
    _, out = tour
    # the followed file was rotated: both records, the first from the file now named app.log.1
    followed = output_of(out, "--follow")
    assert re.search(r"app\.log\s*\|\s*0\s*\|\s*info\s*\|\s*started", followed), followed
    assert re.search(r"app\.log\s*\|\s*0\s*\|\s*error\s*\|\s*Realtime subscription failed", followed), followed
    assert "(2 rows)" in followed
    queried = output_of(out, "error_code = 'UnableToBroadcastChanges'")
    assert "UnableToBroadcastChanges" in queried and queried.lstrip().startswith("[")
    own = output_of(out, "rt-record subscribe")
    assert re.search(r"^\s*3\s+public\.orders INSERT", own, re.M), own
    # the table schema written by `rt-replay schema` passes every recorded order; both engines agree,
    # and the verdicts are a view of the store with one row per checked frame
    validated = output_of(out, "--engine both")
    checked = re.search(r"^(\d+) 0 0$", validated, re.M)
    assert checked and int(checked[1]) >= 6, validated
    assert re.search(rf"^\s*true\s*\|\s*{checked[1]}\s*$", validated, re.M), validated
    assert "false" not in validated

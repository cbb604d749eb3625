"""Secrets promise: planted secrets never reach any byte of the store, WAL included."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from recorder.store import WalReader


def b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


SIGNATURE = "SiGnAtUrE0123456789abcdefXYZ_-planted"
JWT = f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'role': 'anon', 'exp': 1764000000, 'iss': 'supabase', 'email': 'ops-secret-mail@example.com'})}.{SIGNATURE}"
SB_KEY = "sb_secret_PlantedKey0123456789abcdef"
PASSWORD = "hunter2-Planted-Password"
BEARER = "opaquePlantedBearer987654321"
SECRETS = [SIGNATURE, "ops-secret-mail", SB_KEY.removeprefix("sb_secret_"), PASSWORD, BEARER]


def store_text(store: Path) -> list[tuple[str, str]]:
    """Every file under the store as text to search: decoded Parquet values, WAL rows, raw bytes."""
    out = []
    for path in store.rglob("*"):
        if not path.is_file():
            continue
        out.append((str(path), path.read_bytes().decode("latin-1")))
        if path.suffix == ".parquet":
            out.append((str(path), json.dumps(pq.read_table(path).to_pylist(), default=repr)))
        if path.name.startswith("wal-"):
            for _lsn, meta, rows in WalReader(path):
                out.append((str(path), json.dumps(meta) + json.dumps(rows().to_pylist(), default=repr)))
    return out


def assert_no_secrets(store: Path) -> None:
    leaks = [(name, s) for name, text in store_text(store) for s in SECRETS if s in text]
    assert leaks == []


def write_planted_logs(folder: Path) -> list[Path]:
    realtime = folder / "realtime.log"
    realtime.write_text(
        "2026-11-24 08:00:00,001 - realtime._async.client - DEBUG - Attempting to connect to WebSocket at "
        f"wss://abc.supabase.co/realtime/v1/websocket?apikey={JWT}&vsn=1.0.0\n"
        "2026-11-24 08:00:00,002 - realtime._async.client - DEBUG - send: "
        f'{{"event":"phx_join","payload":{{"config":{{}},"access_token":"{JWT}"}},"topic":"realtime:room1","ref":"1","join_ref":"1"}}\n'
    )
    bot = folder / "bot.log"
    bot.write_text(
        f"2026-11-24 08:00:01,000 - bot.db - ERROR - connect failed password={PASSWORD} host=db\n"
        f"2026-11-24 08:00:02,000 - bot.http - DEBUG - headers {{'Authorization': 'Bearer {BEARER}'}}\n"
        "Traceback (most recent call last):\n"
        f"  apikey: {SB_KEY}\n"
    )
    app = folder / "app.jsonl"
    app.write_text(json.dumps({"timestamp": "2026-11-24T08:00:03Z", "level": "info", "msg": "token refresh",
                               "access_token": JWT, "secret": PASSWORD}) + "\n")
    server = folder / "server.log"
    server.write_text(f"08:00:04.000 project=abc external_id=abc [error] InvalidJWTToken: bad token {JWT}\n")
    return [realtime, bot, app, server]


def test_batch_import_keeps_no_secret_and_keeps_diagnostic_claims(tmp_path):
    files = write_planted_logs(tmp_path)
    store = tmp_path / "store"
    r = subprocess.run(
        [sys.executable, "-m", "recorder.cli", "logs", *map(str, files), "--store", str(store), "--tz", "UTC",
         "--date", "2026-11-24"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    assert_no_secrets(store)
    rows = [row for p in store.glob("logs/*/*.parquet") for row in pq.read_table(p).to_pylist()]
    assert len(rows) == 6  # the traceback belongs to the bot record before it
    join = next(row for row in rows if "phx_join" in row["raw"])
    token = join["raw"].split('"access_token":"')[1].split('"')[0]
    header, claims, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    assert decoded == {"role": "anon", "exp": 1764000000, "iss": "supabase"}
    assert signature == "REDACTED"


def test_followed_logs_keep_no_secret_in_the_wal_after_kill_minus_nine(tmp_path):
    files = write_planted_logs(tmp_path)
    store = tmp_path / "store"
    proc = subprocess.Popen(
        [sys.executable, "-m", "recorder.cli", "logs", *map(str, files), "--store", str(store), "--follow",
         "--tz", "UTC", "--date", "2026-11-24", "--quiet"],
    )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(list(store.glob("logs/*/*.parquet"))) < 2:
            time.sleep(0.1)
        with open(files[1], "a") as fh:  # appended, acknowledged in the WAL, maybe not committed
            fh.write(f"2026-11-24 08:00:05,000 - bot.db - ERROR - retry password={PASSWORD}\n")
        time.sleep(0.5)
    finally:
        proc.kill()
        proc.wait()
    assert list(store.glob("_wal/logs/wal-*.log"))
    assert_no_secrets(store)

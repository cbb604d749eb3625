"""notebooks/*.ipynb run on the fixtures with nbclient, on the venv's own kernel, and are committed clean.

Each run starts a fresh ``python3`` kernel with an empty home directory (no user-level kernel
spec, IPython profile or matplotlib settings), points the notebook at a fixture through its
environment parameters (``RT_STORE``, ``RT_THRESHOLDS``) and checks what it printed and drew.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
SCENARIOS = ROOT / "fixtures" / "scenarios"
ALL = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))


@pytest.fixture
def run_notebook(tmp_path, monkeypatch):
    """Execute a notebook in a new kernel with ``env`` set; return (the executed notebook, all its text)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("JUPYTER_PATH", "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                "MPLCONFIGDIR", "MPLBACKEND", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME",
                "RT_STORE", "RT_THRESHOLDS", "RT_SCHEMA", "RT_ENGINE"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)

    def run(name: str, probe: str | None = None, **env: str) -> tuple[nbformat.NotebookNode, str]:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        if probe is not None:
            nb.cells.append(nbformat.v4.new_code_cell(probe))
        client = NotebookClient(nb, timeout=120, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOKS)}})
        client.execute()
        return nb, "\n".join(_texts(nb))

    return run


def _texts(nb) -> list[str]:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.output_type == "stream":
                out.append(o.text)
            elif "data" in o and "text/plain" in o.data:
                out.append(o.data["text/plain"])
    return out


def _images(nb) -> int:
    return sum("image/png" in o.get("data", {}) for cell in nb.cells for o in cell.get("outputs", []))


def _line(text: str, prefix: str) -> str:
    lines = [line for line in text.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, f"expected one line starting {prefix!r} in:\n{text[-3000:]}"
    return lines[0]


def _labels(name: str) -> tuple[list[str], list[str]]:
    expected = json.loads((SCENARIOS / name / "expected.json").read_text())
    causes = sorted({f"{i['cause']}/{i['detail']}" for i in expected["incidents"]})
    escalations = [rule for rule, breached in expected["escalations"].items() if breached]
    return causes, escalations


@pytest.mark.parametrize("name", ["join_failures", "healthy", "incident_day"])
def test_triage_names_the_labelled_cause(run_notebook, name):
    # incident_day is the default store: no RT_STORE
    env = {} if name == "incident_day" else {"RT_STORE": str(SCENARIOS / name / "store")}
    nb, text = run_notebook("triage.ipynb", probe="import sys; print('kernel prefix:', sys.prefix)", **env)
    causes, escalations = _labels(name)
    assert _line(text, "causes:") == f"causes: {', '.join(causes) if causes else 'none'}"
    assert _line(text, "escalate:") == f"escalate: {', '.join(escalations) if escalations else 'no'}"
    assert _images(nb) == 1  # the timeline
    # the kernel is this environment's Python, whatever kernel specs the user may have
    assert _line(text, "kernel prefix:") == f"kernel prefix: {sys.prefix}"
    if name == "join_failures":
        assert _line(text, "inc-1  ") == "inc-1  subscription_failure / tenant  x3  realtime:public:orders"
        assert "38 rows around inc-1 (at most 500), 12 of them evidence" in text
        # the evidence rows: the refused join's reply frame and the client's log line
        assert re.search(r"frames proxy +seq 3 +phx_reply .*TenantNotFound", text)
        assert re.search(r"logs +realtime +offset 1739 +join push error for channel realtime:public:orders", text)
    elif name == "incident_day":
        assert "73 frames, 256 log records, 10 incident(s), escalate: True" in text
        assert _line(text, "inc-10  ") == "inc-10  db_connectivity / unreachable  x19  "
    else:
        assert "no incident to show" in text


def test_payloads_default_to_the_incident_day(run_notebook):
    nb, text = run_notebook("payloads.ipynb")
    assert _line(text, "checked ").startswith("checked 43 payloads with jsonschema-rs ")
    assert _line(text, "checked ").endswith(": 38 valid, 5 invalid, 30 frames skipped, 0 disagreements between engines")
    assert re.fullmatch(r"public\.orders +postgres_changes UPDATE +/data/record +empty +3",
                        _line(text, "public.orders            postgres_changes UPDATE  /data/record"))
    assert re.fullmatch(r"public\.orders +postgres_changes UPDATE +/data/errors +too_large +1",
                        _line(text, "public.orders            postgres_changes UPDATE  /data/errors"))
    assert _line(text, "5 of 43") == "5 of 43 payloads invalid; 5 invalid changes in the report's view"
    assert _images(nb) == 1


def test_payloads_by_table_and_json_path(run_notebook):
    nb, text = run_notebook("payloads.ipynb", RT_STORE=str(SCENARIOS / "bad_payloads" / "store"))
    assert re.fullmatch(r"checked 7 payloads with jsonschema-rs \S+: 4 valid, 3 invalid, 4 frames skipped, "
                        r"0 disagreements between engines", _line(text, "checked "))
    assert re.fullmatch(r"public\.orders +postgres_changes UPDATE +/data/record +empty +3", _line(text, "public.orders "))
    assert _line(text, "3 of 7") == "3 of 7 payloads invalid; 3 invalid changes in the report's view"
    assert text.count('"record":{}') == 3  # the failing payloads themselves, joined back from the frames
    assert _images(nb) == 1


def test_payloads_both_engines_on_a_valid_recording(run_notebook):
    nb, text = run_notebook("payloads.ipynb", RT_STORE=str(SCENARIOS / "healthy" / "store"), RT_ENGINE="both")
    assert re.fullmatch(r"checked 6 payloads with jsonschema-rs \S+, jsonschema \S+: 6 valid, 0 invalid, "
                        r"\d+ frames skipped, 0 disagreements between engines", _line(text, "checked "))
    assert "every payload is valid: nothing to plot" in text
    assert _images(nb) == 0


def test_backtest_default_is_the_incident_day(run_notebook):
    nb, text = run_notebook("thresholds_backtest.ipynb")  # no RT_STORE: records fixtures/logs itself
    assert "0 frames, 886 log records, 9 incidents" in text
    assert _line(text, "realtime_down:").startswith("realtime_down: fired [1, 1, 1, 1, 1, 0, 0] at limits "
                                                    "[60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0] s")
    assert _line(text, "subscription_failures:").startswith("subscription_failures: fired [1, 1, 1, 0, 0]")
    assert _line(text, "db_connectivity:").startswith("db_connectivity: fired [1, 1, 0, 0, 0, 0]")
    assert _line(text, "payload_error_rate:") == "payload_error_rate: not evaluated"
    assert _images(nb) == 1


def test_backtest_with_a_thresholds_file(run_notebook, tmp_path):
    toml = tmp_path / "thresholds.toml"
    toml.write_text("[payload_error_rate]\nmin_events = 1\n")
    nb, text = run_notebook("thresholds_backtest.ipynb", RT_STORE=str(SCENARIOS / "bad_payloads" / "store"),
                            RT_THRESHOLDS=str(toml))
    # 3 changes, all invalid: every rate limit below 100 % fires, once
    assert _line(text, "payload_error_rate:").startswith("payload_error_rate: fired [1, 1, 1, 1, 1, 1]")
    assert _line(text, "subscription_failures:").startswith("subscription_failures: fired [0, 0, 0, 0, 0]")
    assert _images(nb) == 1


def test_every_notebook_is_tested():
    assert ALL == ["payloads.ipynb", "thresholds_backtest.ipynb", "triage.ipynb"]
    tested = Path(__file__).read_text()
    assert all(f'"{name}"' in tested for name in ALL)


@pytest.mark.parametrize("name", ALL)
def test_committed_notebook_is_clean(name):
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [], f"{name}: outputs not cleared in {cell.source[:60]!r}"
        assert cell.execution_count is None
        assert "execution" not in cell.metadata
    parameters = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(parameters) == 1 and "RT_STORE" in parameters[0].source
    source = "\n".join(c.source for c in code)
    assert "from analyzer" in source
    assert not re.search(r"subprocess|os\.system|^!|rt-analyze|rt-replay|analyzer\.cli|replay_cli", source, re.M)

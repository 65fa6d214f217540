"""make chaos's table: cases grouped by suite, backend and fault; outages in a table of their
own; the exit status says whether anything was lost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vaultbridge.testenv.chaos_table import main, outage_rows, rows

WIRE = {"suite": "wire", "backend": "vault", "fault": "reset", "struck": True, "settled_in": 2.0}
OUTAGE = {
    "suite": "outage",
    "backend": "ceph",
    "outage_s": 120,
    "credentials": 100,
    "requests_per_minute": [10, 2],
    "held": 100,
    "secrets_written": 0,
    "recovered_s": 7.2,
    "lost": 0,
}


def test_cases_are_grouped_and_counted() -> None:
    lost = {**WIRE, "problems": ["Ceph's value is not Vault's latest"], "settled_in": 4.0}
    table = rows([WIRE, lost, OUTAGE])
    assert len(table) == 1
    assert table[0][:6] == ["wire", "vault", "reset", 2, 2, 1]
    assert table[0][-1] == "3.0 / 4.0"
    assert outage_rows([WIRE, OUTAGE]) == [["ceph", 120, 100, "10 / 2", 100, 0, 0, 7.2]]


@pytest.mark.parametrize(("cases", "status"), [([WIRE, OUTAGE], 0), ([{**OUTAGE, "lost": 1}], 1)])
def test_the_exit_status_says_whether_anything_was_lost(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cases: list[dict[str, object]], status: int
) -> None:
    report = tmp_path / "report.jsonl"
    report.write_text("".join(json.dumps(c) + "\n" for c in cases))
    assert main([str(report)]) == status
    assert "with something lost" in capsys.readouterr().out


def test_a_missing_report_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "none.jsonl")]) == 1
    assert "none.jsonl" in capsys.readouterr().err

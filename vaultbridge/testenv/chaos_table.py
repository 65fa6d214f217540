"""Print the fault-injection suite's table from its report (``make chaos``).

Each test of the suite appends one JSON line per case to ``$VAULTBRIDGE_CHAOS_REPORT``; this
groups them by suite (wire faults, the crash matrix), backend and fault: runs, cases where
something was lost (Ceph, the Secret, the labels and the status disagreeing after the fault, or
neither credential live), consumer failures outside and inside the documented in-place window,
rotations missing from the history, and the times to settle. The outages get a table of their
own: requests in each minute, credentials held, Secrets written, recovery.

    python -m vaultbridge.testenv.chaos_table .chaos/report.jsonl
"""

from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate


def rows(cases: list[dict[str, Any]]) -> list[list[Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for case in cases:
        if case.get("suite") == "outage":
            continue
        groups[(case.get("suite", "?"), case["backend"], case["fault"])].append(case)
    table = []
    for (suite, backend, fault), group in sorted(groups.items()):
        settle = [float(c.get("settled_in", 0.0)) for c in group]
        table.append(
            [
                suite,
                backend,
                fault,
                len(group),
                sum(1 for c in group if c.get("struck")),
                sum(1 for c in group if c.get("problems") or c.get("dead_ticks")),
                sum(int(c.get("consumer_failures", 0)) for c in group),
                sum(int(c.get("in_window_failures", 0)) for c in group),
                sum(len(c.get("unrecorded", [])) for c in group),
                sum(1 for c in group if any("RolledBack" in h for h in c.get("history", []))),
                f"{statistics.median(settle):.1f} / {max(settle):.1f}",
            ]
        )
    return table


def outage_rows(cases: list[dict[str, Any]]) -> list[list[Any]]:
    return [
        [
            c["backend"],
            c["outage_s"],
            c["credentials"],
            " / ".join(str(n) for n in c["requests_per_minute"]),
            c["held"],
            c["secrets_written"],
            c["lost"],
            c["recovered_s"],
        ]
        for c in cases
        if c.get("suite") == "outage"
    ]


OUTAGE_HEADERS = [
    "backend down",
    "seconds",
    "rotations due",
    "requests in each minute",
    "held",
    "Secrets written during it",
    "lost",
    "all promoted, s after recovery",
]

HEADERS = [
    "suite",
    "backend",
    "fault",
    "runs",
    "struck",
    "lost",
    "consumer failures",
    "in the in-place window",
    "unrecorded",
    "rolled back",
    "rotation start to settled, s (median / max)",
]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vaultbridge.testenv.chaos_table REPORT.jsonl", file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.is_file():
        print(f"chaos_table: no report at {path} (did the suite run?)", file=sys.stderr)
        return 1
    cases = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    print(tabulate(rows(cases), headers=HEADERS, tablefmt="github"))
    outages = outage_rows(cases)
    if outages:
        print()
        print(tabulate(outages, headers=OUTAGE_HEADERS, tablefmt="github"))
    lost = sum(1 for c in cases if c.get("problems") or c.get("dead_ticks") or c.get("lost"))
    print(f"\n{len(cases)} cases, {lost} with something lost")
    return 1 if lost else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))

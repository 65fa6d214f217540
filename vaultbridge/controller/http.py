"""The controller's HTTP surface: ``/metrics``, ``/healthz``, ``/readyz`` and the webhook."""

from __future__ import annotations

from typing import Any

from vaultbridge.controller import memory
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.triggers import Triggers
from vaultbridge.observability.http import Routes
from vaultbridge.observability.metrics import CONTENT_TYPE, Metrics
from vaultbridge.triggers.audit import MAX_ENTRY

TRIM_AFTER_SCRAPE = 1 << 20  # bytes of /metrics (about 3,000 credentials) worth a trim


def routes(
    metrics: Metrics, leadership: Leadership, triggers: Triggers, watches_ok: dict[str, bool]
) -> Routes:
    def readiness() -> tuple[int, dict[str, Any]]:
        problems = []
        if not leadership.alive():
            problems.append("leader election loop is not running")
        for backend, ok in sorted(metrics.backend_health().items()):
            if not ok:
                reason = metrics.backend_failure(backend) or "last request failed"
                problems.append(f"{backend}: {reason}")
        if leadership.leading.is_set():
            problems += [f"{w} watch failing" for w, ok in watches_ok.items() if not ok]
        role = "leader" if leadership.leading_now() else "standby"
        body: dict[str, Any] = {"role": role, "identity": leadership.elector.identity}
        if problems:
            return 503, {**body, "status": "not ready", "problems": problems}
        return 200, {**body, "status": "ready"}

    def scrape(names: frozenset[str]) -> tuple[bytes, str]:
        text = metrics.render(names)
        if len(text) > TRIM_AFTER_SCRAPE:  # many per-credential samples came and went
            memory.trim()
        return text, CONTENT_TYPE

    return Routes(
        metrics=scrape,
        healthz=lambda: (200, {"status": "ok"}),
        readyz=readiness,
        posts={
            "/v1/trigger": triggers.post_trigger,
            "/v1/schedules/run": triggers.post_schedule,
            "/v1/audit": triggers.post_audit,
        },
        max_body={"/v1/audit": MAX_ENTRY},
    )

"""Compliance schedules: one APScheduler job per CredentialRotation with a ``spec.schedule``.

Cron expressions are 5-field crontab lines evaluated in UTC. Jobs coalesce and have a
misfire grace time, so a run the scheduler itself missed (a busy or paused process) fires once,
not once per missed slot. A run missed while the controller was down is detected from the
credential's last rotation time: when a fire time lies between the last rotation and now, the
job's first run is now (once). A run does not rotate by itself: it calls ``fire(key)``, which
queues the credential in the work queue (one rotation in flight per credential holds there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

DEFAULT_MISFIRE_GRACE = 3600
_EPSILON = timedelta(microseconds=1)


class InvalidSchedule(ValueError):  # noqa: N818 - reads better at the raise site
    """A cron expression APScheduler cannot parse; the message says why."""


def parse_cron(expression: str, jitter: float | None = None) -> CronTrigger:
    """A UTC CronTrigger for a 5-field crontab line, or :class:`InvalidSchedule`."""
    fields = expression.split()
    if len(fields) != 5:
        raise InvalidSchedule(
            f"schedule {expression!r}: need 5 fields (minute hour day-of-month month "
            f"day-of-week), got {len(fields)}"
        )
    try:
        trigger = CronTrigger.from_crontab(expression, timezone=UTC)
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidSchedule(f"schedule {expression!r}: {exc}") from None
    if jitter:
        trigger.jitter = int(jitter)
    return trigger


def missed_since(expression: str, last: datetime | None, now: datetime) -> bool:
    """True when ``expression`` had a fire time after ``last`` and at or before ``now``."""
    if last is None:
        return False
    trigger = parse_cron(expression)
    following = trigger.get_next_fire_time(None, last + _EPSILON)
    return following is not None and following <= now


class Schedules(Generic[K]):
    """Keeps one job per key in step with the specs; ``fire(key)`` runs when a job is due."""

    def __init__(
        self,
        fire: Callable[[K], None],
        *,
        jitter: float = 0.0,
        misfire_grace_time: int = DEFAULT_MISFIRE_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fire = fire
        self.jitter = jitter
        self.misfire_grace_time = misfire_grace_time
        self._clock = clock
        self._lock = threading.Lock()
        self._exprs: dict[K, str] = {}
        self._ids: dict[K, str] = {}
        self._scheduler = BackgroundScheduler(
            timezone=UTC,
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": misfire_grace_time,
            },
        )
        self.fired = 0

    def start(self) -> None:
        if not self._scheduler.running:
            self._scheduler.start()

    def shutdown(self) -> None:
        self._scheduler.remove_all_jobs()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        with self._lock:
            self._exprs.clear()
            self._ids.clear()

    @property
    def running(self) -> bool:
        return bool(self._scheduler.running)

    def set(self, key: K, expression: str | None, last_rotation: datetime | None = None) -> None:
        """Create, replace or (``expression`` None: suspended or no schedule) remove the job.

        Raises :class:`InvalidSchedule` (and removes any old job) for a bad expression.
        """
        if expression is None:
            self.remove(key)
            return
        with self._lock:
            if self._exprs.get(key) == expression and key in self._ids:
                return
        try:
            trigger = parse_cron(expression, self.jitter or None)
        except InvalidSchedule:
            self.remove(key)
            raise
        now = self._clock()
        first: datetime | None = now if missed_since(expression, last_rotation, now) else None
        with self._lock:
            old = self._ids.pop(key, None)
            if old is not None:
                self._remove_job(old)
            kwargs: dict[str, Any] = {}
            if first is not None:
                kwargs["next_run_time"] = first
                log.info("%s: a scheduled rotation was missed while down; running it once now", key)
            job = self._scheduler.add_job(
                self._run, trigger, args=[key], name=f"schedule {key}", **kwargs
            )
            self._ids[key] = str(job.id)
            self._exprs[key] = expression

    def remove(self, key: K) -> None:
        with self._lock:
            self._exprs.pop(key, None)
            job_id = self._ids.pop(key, None)
            if job_id is not None:
                self._remove_job(job_id)

    def _remove_job(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except Exception as exc:  # JobLookupError: already gone
            log.debug("schedule job %s already removed: %s", job_id, exc)

    def run_now(self, key: K) -> bool:
        """Make ``key``'s job due now (through the scheduler); False when it has no job."""
        with self._lock:
            job_id = self._ids.get(key)
            if job_id is None:
                return False
            job = self._scheduler.get_job(job_id)
            if job is None:
                return False
            job.modify(next_run_time=self._clock())
        self._scheduler.wakeup()
        return True

    def next_run(self, key: K) -> datetime | None:
        with self._lock:
            job_id = self._ids.get(key)
            job = self._scheduler.get_job(job_id) if job_id else None
            return job.next_run_time if job is not None else None

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._ids)

    def _run(self, key: K) -> None:
        self.fired += 1
        try:
            self._fire(key)
        except Exception:
            log.exception("%s: scheduled run failed to queue", key)

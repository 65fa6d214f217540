"""The trigger wiring: what puts a credential on the work queue besides the watches.

- one APScheduler job per ``spec.schedule`` (a compliance rotation: ``Engine.rotate``);
- the Vault KV metadata poller, and the Vault Agent file watcher;
- the webhook (``POST /v1/trigger``, ``POST /v1/schedules/run``) behind its authorizer;
(the periodic drift sweep is ``controller/sweep.py``).
"""

from __future__ import annotations

import logging
from typing import Any

from vaultbridge.adapters import credential_from
from vaultbridge.controller.index import CredentialIndex, Entry
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.work import Workers
from vaultbridge.engine.ports import EventRecorder, VaultStore
from vaultbridge.kube import KubeClient, TokenClient
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.metrics import Metrics
from vaultbridge.settings import Settings
from vaultbridge.triggers.detect import AgentFileWatcher, Poller
from vaultbridge.triggers.schedules import InvalidSchedule, Schedules
from vaultbridge.triggers.webhook import Authorizer, Rejected, TriggerEndpoint

log = logging.getLogger(__name__)

Reply = tuple[int, dict[str, Any]]


class Triggers:
    def __init__(
        self,
        *,
        settings: Settings,
        index: CredentialIndex,
        workers: Workers,
        leadership: Leadership,
        metrics: Metrics,
        vault: VaultStore | None,
        events: EventRecorder,
        kube: KubeClient,
    ) -> None:
        self.settings, self.index, self.workers = settings, index, workers
        self.leadership, self.metrics, self.vault, self.events = leadership, metrics, vault, events
        ts = settings.triggers
        self.schedules: Schedules[CredentialRef] = Schedules(
            lambda ref: workers.enqueue(ref, "schedule", "rotate"), jitter=ts.schedule_jitter
        )
        self._invalid_schedules: dict[CredentialRef, tuple[int, str]] = {}
        self.poller: Poller[CredentialRef] = Poller(
            index.sources, self._current_version, workers.enqueue, budget=ts.poll_budget
        )
        self.agent: AgentFileWatcher[CredentialRef] | None = None
        if ts.agent_file is not None:
            self.agent = AgentFileWatcher(
                ts.agent_file,
                index.sources,
                workers.enqueue,
                lambda: self.poller.cycle(unlimited=True, trigger="agent"),
                interval=ts.agent_interval,
            )
        token = ts.webhook_token
        self.authorizer = Authorizer(
            token.get_secret_value() if token else None,
            review=TokenClient(kube).review_token,
            allowed_subjects=tuple(ts.webhook_subjects),
        )
        self.endpoint: TriggerEndpoint[CredentialRef] = TriggerEndpoint(
            index.by_path, index.by_name, workers.enqueue, ready=leadership.leading_now
        )

    def _current_version(self, mount: str, path: str) -> int:
        if self.vault is None:
            raise PreconditionError("VaultNotConfigured", "no Vault connection")
        return self.vault.current_version(mount, path)

    # -- a term's start and end ------------------------------------------------------------------

    def start(self) -> None:
        self.schedules.start()
        if self.agent is not None:
            self.agent.start()

    def stop(self) -> None:
        self.schedules.shutdown()
        if self.agent is not None:
            self.agent.stop()

    # -- schedules (told by the CR watch) --------------------------------------------------------

    def schedule(self, entry: Entry, raw: dict[str, Any]) -> None:
        spec = entry.spec
        expression = None if spec is None or spec.suspend else spec.schedule
        try:
            self.schedules.set(entry.ref, expression, entry.status.last_rotation_time)
            self._invalid_schedules.pop(entry.ref, None)
        except InvalidSchedule as exc:
            message = str(exc)
            if self._invalid_schedules.get(entry.ref) == (entry.generation, message):
                return
            self._invalid_schedules[entry.ref] = (entry.generation, message)
            self.metrics.schedule_errors.inc()
            log.warning("%s: %s; no compliance rotation is scheduled", entry.ref, message)
            self._warn(raw, "InvalidSchedule", f"{message}; no compliance rotation is scheduled")

    def unschedule(self, ref: CredentialRef) -> None:
        self.schedules.remove(ref)
        self._invalid_schedules.pop(ref, None)

    def _warn(self, raw: dict[str, Any], reason: str, message: str) -> None:
        try:
            self.events.emit(credential_from(raw), "Warning", reason, message)
        except (BackendError, PreconditionError) as exc:
            log.debug("could not record event %s: %s", reason, exc)

    # -- periodic loops --------------------------------------------------------------------------

    def poll_loop(self, epoch: int) -> None:
        interval = self.settings.triggers.poll_interval
        while self.leadership.acting(epoch) and not self.leadership.stopping.wait(interval):
            if not self.leadership.acting(epoch):
                return
            try:
                self.poller.cycle()
            except Exception:
                log.exception("poll cycle failed")

    # -- the webhook -----------------------------------------------------------------------------

    def _authorize(self, authorization: str | None) -> Reply | None:
        try:
            self.authorizer.check(authorization)
        except Rejected as exc:
            self.metrics.webhook_rejected.labels(str(exc.status)).inc()
            log.info("trigger rejected: %s", exc.message)
            return exc.status, {"error": exc.message}
        return None

    def post_trigger(self, body: bytes, authorization: str | None) -> Reply:
        denied = self._authorize(authorization)
        if denied is not None:
            return denied
        status, reply = self.endpoint.handle(body)
        if status != 202:
            self.metrics.webhook_rejected.labels(str(status)).inc()
            log.info("trigger rejected (%d): %s", status, reply.get("error"))
        return status, reply

    def post_schedule(self, body: bytes, authorization: str | None) -> Reply:
        """Run a credential's compliance schedule now (through the scheduler)."""
        denied = self._authorize(authorization)
        if denied is not None:
            return denied
        if not self.leadership.leading_now():
            return 503, {"error": "not the leader; send this to the leader (or retry)"}
        try:
            refs = self.endpoint.resolve(body)
        except Rejected as exc:
            return exc.status, {"error": exc.message}
        missing = [str(ref) for ref in refs if not self.schedules.run_now(ref)]
        if missing:
            return 404, {"error": f"no schedule for {', '.join(missing)}"}
        return 202, {"scheduled": [str(ref) for ref in refs]}

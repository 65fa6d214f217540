"""The trigger wiring: what puts a credential on the work queue besides the watches.

- one APScheduler job per ``spec.schedule`` (a compliance rotation: ``Engine.rotate``);
- the Vault KV metadata poller, and the Vault Agent file watcher;
- the webhook (``POST /v1/trigger``, ``POST /v1/schedules/run``) behind its authorizer;
- the audit-device push (``POST /v1/audit``, and the socket device's listener);
(the periodic drift sweep is ``controller/sweep.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from vaultbridge.adapters import credential_from
from vaultbridge.controller.index import CredentialIndex, Entry
from vaultbridge.controller.leadership import Leadership
from vaultbridge.controller.outage import UNAVAILABLE
from vaultbridge.controller.work import Workers
from vaultbridge.engine.ports import EventRecorder, VaultStore
from vaultbridge.kube import KubeClient, TokenClient
from vaultbridge.model.errors import BackendError, PreconditionError
from vaultbridge.model.spec import CredentialRef
from vaultbridge.observability.metrics import Metrics
from vaultbridge.settings import Settings
from vaultbridge.triggers.audit import AuditReceiver
from vaultbridge.triggers.audit_socket import AuditSocket
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
        spread = None
        if ts.audit_push and ts.poll_interval > 0:  # the push finds writes: poll for safety
            spread = ts.poll_interval / ts.safety_poll_period
        self.poller: Poller[CredentialRef] = Poller(
            index.sources,
            self._current_version,
            workers.enqueue,
            budget=ts.poll_budget,
            spread=spread,
            unavailable=lambda exc: type(exc).__name__ in UNAVAILABLE,
        )
        self.audit, self.audit_socket = _audit(settings, index, metrics, self._queue_pushed)
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

    def _queue_pushed(self, ref: CredentialRef, trigger: str) -> None:
        if self.leadership.leading_now():  # a standby drops it: the safety poll covers it
            self.workers.enqueue(ref, trigger)

    def serve_audit_socket(self) -> None:
        if self.audit_socket is not None:
            self.audit_socket.start()

    def close_audit_socket(self) -> None:
        if self.audit_socket is not None:
            self.audit_socket.stop()

    def post_audit(self, body: bytes, authorization: str | None) -> Reply:
        """``POST /v1/audit``: entries from OpenBao's ``http`` audit device. Always 202 to an
        authenticated sender, so that vaultbridge's answer never fails Vault's device."""
        if not self.audit.authorized(authorization):
            self.metrics.audit_rejected.labels("token").inc()
            return 401, {"error": "audit entries need the audit token (triggers.audit_token)"}
        return 202, {"queued": self.audit.lines(body)}

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


def _audit(
    settings: Settings,
    index: CredentialIndex,
    metrics: Metrics,
    queue: Callable[[CredentialRef, str], None],
) -> tuple[AuditReceiver[CredentialRef], AuditSocket | None]:
    """The audit-device receiver, and its socket listener when one is configured."""
    ts = settings.triggers
    receiver: AuditReceiver[CredentialRef] = AuditReceiver(
        index.by_path,
        queue,
        token=ts.audit_token.get_secret_value() if ts.audit_token else None,
        counted=lambda result: metrics.audit_entries.labels(result).inc(),
    )
    if ts.audit_socket is None:
        return receiver, None
    listener = AuditSocket(
        ts.audit_socket,
        receiver,
        peers=ts.audit_peers,
        uids=ts.audit_uids,
        rejected=lambda reason: metrics.audit_rejected.labels(reason).inc(),
    )
    return receiver, listener

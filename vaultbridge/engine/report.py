"""What the engine tells: Events on the CR, and the observer's steps (held back while a
rotation from a copy has not claimed yet: if its claim is refused, it never happened)."""

from __future__ import annotations

from typing import Literal

from vaultbridge.engine.job import Job
from vaultbridge.engine.ports import CredentialObject, EventRecorder
from vaultbridge.engine.runtime import Runtime
from vaultbridge.model.spec import CredentialRef


class Reporter:
    def __init__(self, events: EventRecorder, runtime: Runtime) -> None:
        self.events = events
        self.runtime = runtime

    def event(
        self,
        credential: CredentialObject,
        type: Literal["Normal", "Warning"],
        reason: str,
        message: str,
    ) -> None:
        """Record an Event on the CR, and tell the observer."""
        self.events.emit(credential, type, reason, message)
        self.observe(credential.ref, reason, message)

    def observe(self, ref: CredentialRef, what: str, detail: str) -> None:
        self.runtime.observe(ref, what, detail)

    def step(self, job: Job, what: str | None, detail: str = "") -> None:
        """Tell the observer of a step once the rotation's claim is known to stand (None:
        only what was held back)."""
        if what is not None:
            job.unconfirmed.append((what, detail))
        if job.from_copy and not job.claimed and what is not None:
            return
        held, job.unconfirmed = job.unconfirmed, []
        for reason, message in held:
            self.observe(job.credential.ref, reason, message)

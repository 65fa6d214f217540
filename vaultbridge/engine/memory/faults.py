"""A fault table shared by the in-memory ports: a failure or a stale answer at any call."""

from __future__ import annotations

from dataclasses import dataclass, field

from vaultbridge.model.errors import BackendError


class MemoryNotFound(BackendError):  # noqa: N818 - named like the adapters' KubeNotFound
    """The object does not exist (the real adapters raise KubeNotFound, VaultNotFound)."""

    transient = False

    def __init__(self, message: str, reason: str = "NotFound") -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


class MemoryRejected(BackendError):  # noqa: N818 - named like CephRejected
    """The backend refused the request (ownership, check-and-set, an unknown option)."""

    transient = False

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self._reason = reason

    @property
    def reason(self) -> str:
        return self._reason


@dataclass
class _Rule:
    error: BaseException | None
    times: int
    after: int  # calls to let through first
    stale: bool = False


@dataclass
class Faults:
    """Which calls fail (or answer stale) next; ``calls`` records every call by name."""

    rules: dict[str, list[_Rule]] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def fail(self, name: str, error: BaseException, *, times: int = 1, after: int = 0) -> None:
        """``name`` (``"<port>.<method>"``) raises ``error`` ``times`` times, after ``after``
        calls that pass."""
        self.rules.setdefault(name, []).append(_Rule(error, times, after))

    def stale(self, name: str, *, times: int = 1, after: int = 0) -> None:
        """``name`` answers from the state before the latest write (crs.load, secrets.read)."""
        self.rules.setdefault(name, []).append(_Rule(None, times, after, stale=True))

    def check(self, name: str) -> bool:
        """Record the call; raise its fault, or return True when it should answer stale."""
        self.calls.append(name)
        for rule in self.rules.get(name, []):
            if rule.times <= 0:
                continue
            if rule.after > 0:
                rule.after -= 1
                continue
            rule.times -= 1
            if rule.stale:
                return True
            assert rule.error is not None
            raise rule.error
        return False

    def count(self, name: str) -> int:
        return self.calls.count(name)

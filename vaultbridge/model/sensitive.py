"""A wrapper that keeps a secret value out of logs, reprs, tracebacks and f-strings."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

REDACTED: Final = "<redacted>"
_FINGERPRINT_KEY: Final = secrets.token_bytes(32)  # per process: never comparable elsewhere


def fingerprint(value: str) -> str:
    """A keyed digest of ``value`` (BLAKE2b with a key that lives only in this process): what
    the watches keep of a Secret's data, so two values can be compared without keeping either."""
    data = value.encode("utf-8", "surrogateescape")
    return hashlib.blake2b(data, key=_FINGERPRINT_KEY, digest_size=16).hexdigest()


class Sensitive:
    """A credential value. ``str()``, ``repr()`` and ``format()`` never show it; ``reveal()`` does.

    Call ``reveal()`` only at the last moment, when handing the value to the server that needs it.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Sensitive):  # pragma: no cover - defensive
            value = value.reveal()
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Sensitive({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sensitive):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(self._value)

    def __len__(self) -> int:
        return len(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Sensitive values are not picklable")

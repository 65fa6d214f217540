"""Logging setup with a redacting filter as a second line of defence.

Credential values travel as ``Sensitive`` and render as ``<redacted>``; this filter also scrubs
what looks like a cephx key, a Vault token or a bearer header in case a library logs one.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Final

_PATTERNS: Final = (
    # cephx secrets: base64 of the 28-byte AES blob (40 characters, ``AQ...==``) and of the
    # 44-byte AES256K blob of Tentacle and later (60 characters, ``Ag...=``)
    re.compile(r"AQ[A-Za-z0-9+/]{36}=="),
    re.compile(r"Ag[A-Za-z0-9+/]{57}="),
    re.compile(r"\b(?:hvs|hvb|hvr|s|b)\.[A-Za-z0-9_-]{20,}"),  # Vault/OpenBao tokens
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)(x-vault-token['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"),
)


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + "<redacted>", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def configure_logging(level: str = "INFO") -> None:
    """Log to stderr in one line per record, through the redacting filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "kubernetes", "hvac"):
        logging.getLogger(noisy).setLevel(max(logging.getLevelName(level), logging.WARNING))

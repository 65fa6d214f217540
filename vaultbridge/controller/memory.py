"""glibc's allocator, tuned for a controller that holds many credentials for days.

CPython hands every object over 512 bytes (dict tables, response bodies, long strings) to
malloc. glibc gives each thread that allocates its own arena, up to eight per core, and keeps
what is freed in each for reuse rather than returning it: at 10,000 credentials, the pages
left behind by a first sync's transient objects held more memory than the credentials do
(docs/benchmarks.md). Two arenas suffice for a process whose threads mostly wait on the
network, and a trim once a burst of work is over hands the free pages back. Elsewhere than
glibc both are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any

M_ARENA_MAX = -8  # glibc's malloc.h
ARENAS = 2


@cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt  # noqa: B018 - glibc only
        libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def limit_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on (call before the threads start)."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, arenas))


def trim() -> bool:
    """Return the free pages of every arena to the system; True when some were."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))

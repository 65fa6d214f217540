"""The allocator hooks: harmless to call at any time, and effective on glibc."""

from __future__ import annotations

import platform

import pytest

from vaultbridge.controller import memory

GLIBC = platform.libc_ver()[0] == "glibc"


def test_the_hooks_answer_and_never_raise() -> None:
    assert memory.limit_arenas(8) is GLIBC  # 8: the default of a 1-core process, harmless
    assert isinstance(memory.trim(), bool)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_pages_freed_under_a_live_object_are_handed_back() -> None:
    memory.trim()
    burst = [bytearray(2048) for _ in range(20_000)]  # 40 MB through malloc
    pinned = bytearray(2048)  # above the burst: the heap's automatic trim cannot reach it
    del burst
    assert memory.trim() is True  # only malloc_trim returns what lies below ``pinned``
    assert len(pinned) == 2048

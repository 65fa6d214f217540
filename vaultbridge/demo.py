"""``vaultbridge demo``: the embedded default environment and a few live rotations."""

from __future__ import annotations


def run_demo(*, mons: int = 1, keep: bool = False) -> int:
    raise NotImplementedError

"""Secret -> mounted volume on the test node: how long the kubelet takes to put each updated
Secret into a Pod's volume (what a volume consumer of a rotated credential waits for).

The figure is the kubelet's: its ``syncFrequency`` (10 s on the test node, 60 s by default)
plus its Secret cache. The ratio is to that sync period. Opt in: ``--only node`` (the run
starts the environment with the node, or reuses one from ``testenv/up --node``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.config import summary
from vaultbridge.testenv.env import Environment
from vaultbridge.testenv.node import SYNC_FREQUENCY
from vaultbridge.testenv.propagation import secret_propagation

UPDATES = 20


def run(env: Environment, log: Callable[[str], None], updates: int = UPDATES) -> dict[str, Any]:
    if env.node is None:
        raise SystemExit("bench node: the environment has no node (testenv/up --node)")
    sync = float(SYNC_FREQUENCY)
    began = time.monotonic()
    delays = secret_propagation(env, updates, f"bench-node-{uuid.uuid4().hex[:6]}")
    result = summary("secret_to_volume", delays, time.monotonic() - began)
    result["kubelet_sync_s"] = sync
    result["p50_over_sync"] = round(result["p50_ms"] / 1000 / sync, 2)
    result["max_ms"] = round(max(delays) * 1000, 1)
    log(
        f"Secret -> volume over {updates} updates: p50 {result['p50_ms'] / 1000:.1f} s, "
        f"p99 {result['p99_ms'] / 1000:.1f} s ({result['p50_over_sync']}x the kubelet's "
        f"{sync:.0f} s sync)"
    )
    return result

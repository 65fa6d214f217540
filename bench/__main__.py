"""``python -m bench``: start the real servers, run the benchmarks, print figures and ratios.

    make bench                                  # everything but node, default sizes
    make bench BENCH_ARGS="--only config --count 200 --rook-sample 20"
    make bench BENCH_ARGS="--only node"         # Secret -> volume on the test node
    make bench BENCH_ARGS="--only scale --count 2000"   # first sync, RSS, idle cost, restart

Results are also written to bench/results/<name>.json (git-ignored).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from vaultbridge.testenv.env import Environment, load, start

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=["config", "cephx", "triggers", "scale", "node", "idle"],
        help="run only these benchmarks (repeatable); node only when named; idle is scale",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        help="credentials of the config pass (default 1000) and of the scale pass (10000)",
    )
    parser.add_argument(
        "--rook-sample",
        type=int,
        default=100,
        help="credentials applied through the Rook CLI path (~0.5 s each)",
    )
    parser.add_argument("--mons", type=int, default=1, help="Ceph monitors to start")
    parser.add_argument(
        "--workers", type=int, default=8, help="worker threads for the concurrent config pass"
    )
    parser.add_argument(
        "--idle-count", type=int, default=None, help="the scale pass's credentials (as --count)"
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=None,
        help="idle window of the scale pass (default 120: four whole poll cycles)",
    )
    args = parser.parse_args()
    wanted = [
        "scale" if name == "idle" else name
        for name in (args.only or ["config", "cephx", "triggers", "scale"])
    ]
    wanted = list(dict.fromkeys(wanted))

    reused = os.environ.get("VAULTBRIDGE_TESTENV_REUSE") == "1" and load() is not None
    node = "node" in wanted
    env: Environment = load() if reused else start(mons=args.mons, node=node)  # type: ignore[assignment]
    log(
        f"environment {'reused' if reused else 'started'}: {env.ceph.mon_ids} mons, "
        f"OpenBao {env.vault.addr}, Kubernetes {env.kube.server}"
    )
    results: dict[str, Any] = {}
    try:
        for name in wanted:
            try:
                module = importlib.import_module(f"bench.{'idle' if name == 'scale' else name}")
            except ModuleNotFoundError:
                log(f"{name}: no benchmark module yet, skipped")
                continue
            if name == "config":
                count = args.count or 1000
                results[name] = module.run(env, count, args.rook_sample, log, args.workers)
            elif name == "scale":
                count = args.idle_count or args.count or 10_000
                results[name] = module.run(env, log, count, args.idle_seconds or module.IDLE)
            else:
                results[name] = module.run(env, log)
    finally:
        if not reused:
            env.stop()
    RESULTS.mkdir(exist_ok=True)
    for name, result in results.items():
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: start the real servers, run the benchmarks, print figures and ratios.

    make bench                                  # everything, default sizes
    make bench BENCH_ARGS="--only config --count 200 --rook-sample 20"
    make bench BENCH_ARGS="--only node"         # Secret -> volume on the test node
    make bench BENCH_ARGS="--only idle --idle-count 2000"   # idle cost per credential-hour

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
        choices=["config", "cephx", "triggers", "node", "idle"],
        help="run only these benchmarks (repeatable); node and idle only when named",
    )
    parser.add_argument("--count", type=int, default=1000, help="config credentials to rotate")
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
        "--idle-count", type=int, default=500, help="credentials for the idle-cost benchmark"
    )
    parser.add_argument(
        "--idle-seconds", type=float, default=130.0, help="idle window of the idle benchmark"
    )
    args = parser.parse_args()
    wanted = args.only or ["config", "cephx", "triggers"]

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
                module = importlib.import_module(f"bench.{name}")
            except ModuleNotFoundError:
                log(f"{name}: no benchmark module yet, skipped")
                continue
            if name == "config":
                results[name] = module.run(env, args.count, args.rook_sample, log, args.workers)
            elif name == "idle":
                results[name] = module.run(env, log, args.idle_count, args.idle_seconds)
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

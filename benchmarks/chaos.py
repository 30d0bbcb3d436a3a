"""`python -m benchmarks.chaos --json [--seed N] [--deployments N] [--short]`: the chaos run.

The seed's story across many applications (quick syncs, canaries with
analysis, bad images that fail and roll back, one WAIT_APPROVAL the run
approves) with two replicas of every service as processes, while faults are
injected at random from a seeded schedule: latency, black holes and resets
on the proxies between the services and PostgreSQL / NATS / kubesim,
`kill -9` and SIGSTOP/SIGCONT of service processes, restarts of PostgreSQL
and nats-server. See `tools/sandbox/slipway_sandbox/chaos.py` for how,
`chaos_plan.py` beside it for the workload and the faults, and `chaos_verdicts.py`
for the invariants.

The report: every invariant's count (`stuck`, `wrong_verdict`, `lost`,
`duplicated_effects`, `overlapping_side_effects`, `notifications_lost`,
`notifications_duplicated`; all must be 0; `overlapping_by_kind` splits the
overlaps into apply, analysis and script), `faults_injected` and
`faults_by_kind`, `seed`, `deployments`, `run_s`. On a broken invariant it
exits 1 and prints, on stderr, each problem and the fault schedule as
injected: `--seed` with the same number plays the same deployments and the
same faults again. `--short` is the `make test` size (8 deployments).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from benchmarks._report import print_report, progress, quiet_logging
from slipway_sandbox.chaos import ChaosOptions, run_chaos
from slipway_sandbox.chaos_plan import FAULT_KINDS

FULL_DEPLOYMENTS = 50
SHORT_DEPLOYMENTS = 8


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run the chaos benchmark and print its report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.chaos", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--seed", type=int, default=1, help="the run's seed (default 1)")
    parser.add_argument("--deployments", type=int, help="at least this many deployments")
    parser.add_argument("--short", action="store_true", help="the test suite's size")
    parser.add_argument(
        "--kinds", default=",".join(FAULT_KINDS), help="fault kinds to inject, comma-separated"
    )
    parser.add_argument(
        "--fault-gap", type=float, default=0.6, help="mean seconds between faults (default 0.6)"
    )
    parser.add_argument("--keep", type=Path, help="keep the run's data and logs in DIR")
    args = parser.parse_args(argv)
    deployments = args.deployments or (SHORT_DEPLOYMENTS if args.short else FULL_DEPLOYMENTS)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    quiet_logging()
    root = args.keep or Path(tempfile.mkdtemp(prefix="slipway-chaos-"))
    try:
        result = asyncio.run(
            run_chaos(
                ChaosOptions(
                    root,
                    seed=args.seed,
                    deployments=deployments,
                    kinds=kinds,
                    mean_fault_gap_s=args.fault_gap,
                    say=progress,
                )
            )
        )
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print_report(result.report(), as_json=args.json)
    if not result.invariants.held:
        for problem in result.invariants.problems:
            print(f"  {problem}", file=sys.stderr)
        print(f"faults as injected (seed {args.seed}):\n{result.schedule()}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()

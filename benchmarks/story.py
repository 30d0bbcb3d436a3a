"""`python -m benchmarks.story [--json] [--keep DIR]`: the seed's story, timed step by step.

Runs `slipway demo --once` as a subprocess (exactly what a user runs), with
`--report` so the story runner writes each step's wall seconds, and reports:

- `wall_s`: the whole command, start-up and shutdown included;
- `startup_s`, `story_s`, `shutdown_s`: its three phases;
- `steps_s.<step>`: each step, from its first action to its judged outcome;
- `configured_wait_s`: what the configuration itself makes the story wait
  (the prd ANALYSIS duration; for the bad image, one analysis interval: the
  earliest its first look can fail it);
- `orchestration_overhead_s`: `story_s - configured_wait_s` — git polling,
  planning, the executor's stages, kubesim rollouts, the relay's hops, the
  notifier — everything Slipway adds on top of the waits it was told to do.

Figures from a shared two-core machine are noisy; compare runs, not numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks._report import print_groups, print_report


def run(keep: Path | None) -> dict[str, Any]:
    """Play `slipway demo --once` and read its report."""
    root = keep or Path(tempfile.mkdtemp(prefix="slipway-bench-story-"))
    report_path = root / "story.json"
    started = time.monotonic()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "slipway_cli",
            "demo",
            "--once",
            "--data-dir",
            str(root / "sandbox"),
            "--report",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    wall_s = time.monotonic() - started
    try:
        if done.returncode != 0 or not report_path.exists():
            sys.stderr.write(done.stdout[-4000:] + done.stderr[-4000:])
            raise SystemExit(f"slipway demo --once exited {done.returncode}")
        story = json.loads(report_path.read_text())
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    story_s = float(story["story_s"])
    startup_s = float(story["startup_s"])
    configured = float(story["configured_wait_s"])
    return {
        "ok": story["ok"],
        "wall_s": round(wall_s, 2),
        "startup_s": round(startup_s, 2),
        "story_s": round(story_s, 2),
        "shutdown_s": round(max(wall_s - startup_s - story_s, 0.0), 2),
        "steps_s": {step["key"]: round(step["seconds"], 2) for step in story["steps"]},
        "configured_wait_s": configured,
        "orchestration_overhead_s": round(story_s - configured, 2),
        "details": {
            f"{step['key']}.configured_wait_s": step["configured_wait_s"] for step in story["steps"]
        },
    }


def print_table(result: dict[str, Any]) -> None:
    """The story's figures as aligned text."""
    for key in (
        "ok",
        "wall_s",
        "startup_s",
        "story_s",
        "shutdown_s",
        "configured_wait_s",
        "orchestration_overhead_s",
    ):
        print(f"{key:<32} {result[key]}")
    for key, value in result["steps_s"].items():
        print(f"steps_s.{key:<24} {value}")
    print_groups({"duration_s": {}, "details": result["details"], "machine": {}})


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: play the story and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.story", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--keep", type=Path, help="keep the sandbox and report in DIR")
    args = parser.parse_args(argv)
    print_report(run(args.keep), as_json=args.json, table=print_table)


if __name__ == "__main__":
    main()

"""How busy the machine is: a shared machine's other load skews every figure of a run."""

from __future__ import annotations

import os
import threading
from time import perf_counter

from benchmarks._report import progress


def machine_busy_seconds() -> float:
    """CPU seconds all processors have spent busy since boot (Linux)."""
    # /proc/stat's first line: cpu user nice system idle iowait irq softirq steal …, in ticks.
    with open("/proc/stat", encoding="ascii") as stat:
        ticks = [int(t) for t in stat.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def busy_cores_before(seconds: float = 1.0) -> float:
    """The cores others keep busy, over `seconds` before the run starts (said on stderr too)."""
    started, busy = perf_counter(), machine_busy_seconds()
    threading.Event().wait(seconds)
    cores = (machine_busy_seconds() - busy) / (perf_counter() - started)
    progress(f"machine busy before the run: {cores:.2f} cores")
    return cores

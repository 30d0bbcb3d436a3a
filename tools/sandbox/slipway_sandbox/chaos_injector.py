"""The chaos run's faults, injected: from the seeded schedule, or at given stages, and healed.

Latency, black holes and connection resets go to one replica group's proxy
(`slipway_sandbox.chaos_stack`); `kill_9` kills a service process, which is
started again after the fault's duration (as Kubernetes would); `sigstop`
stops one and continues it; `postgres_restart` and `nats_restart` restart the
servers themselves, one at a time. A service process that exits on its own is
restarted too (`supervise`) and counted: a service must ride out an outage,
not crash on it.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from shared import deployments
from slipway_sandbox.chaos_plan import Fault, OnStage, fault_schedule
from slipway_sandbox.chaos_stack import ChaosStack
from slipway_sandbox.faults import signal_process
from slipway_sandbox.stack import ServiceProcess

__all__ = ["FaultInjector"]

Say = Callable[[str], None]

_SUPERVISE_POLL_S: Final = 0.5
_BACKENDS: Final = ("postgres", "nats", "kubesim", "prometheus")


class FaultInjector:
    """Injects one run's faults into `stack` and keeps what it did: `faults` as (seconds
    into the run, description), `exited` and `restarts` of processes that exited alone."""

    def __init__(
        self,
        stack: ChaosStack,
        *,
        rng: random.Random,
        mean_gap_s: float,
        kinds: Sequence[str],
        script: Sequence[OnStage],
        restart_exited: bool,
        say: Say,
    ) -> None:
        self.stack = stack
        self.rng = rng
        self.mean_gap_s = mean_gap_s
        self.kinds = kinds
        self.restart_exited = restart_exited
        self.say = say
        self.faults: list[tuple[float, str]] = []
        self.exited: list[str] = []
        self.restarts = 0
        self.started = time.monotonic()
        self._script = list(script)
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped: dict[str, ServiceProcess] = {}
        self._killed: set[str] = set()
        self._server_lock = asyncio.Lock()

    async def inject(self) -> None:
        """The seeded schedule's faults, each at its time, until cancelled."""
        instances = [p.instance for p in self.stack.processes]
        for fault in fault_schedule(
            self.rng, instances, mean_gap_s=self.mean_gap_s, kinds=self.kinds
        ):
            await asyncio.sleep(fault.gap_s)  # the schedule's own clock
            self.faults.append((time.monotonic() - self.started, fault.describe()))
            task = asyncio.create_task(self.apply(fault))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def scripted(self, states: Mapping[str, deployments.Deployment]) -> None:
        """Inject each scripted fault whose app is running its stage now (once each)."""
        for fault in list(self._script):
            state = states.get(fault.app)
            if state is None or not any(
                stage.name == fault.stage and stage.status == deployments.StageStatus.RUNNING
                for stage in state.stages
            ):
                continue
            self._script.remove(fault)
            self.faults.append(
                (time.monotonic() - self.started, f"{fault.kind} during {fault.app} {fault.stage}")
            )
            await self.apply(Fault(0.0, fault.kind))

    async def apply(self, fault: Fault) -> None:
        """One fault, for its duration (then healed)."""
        stack = self.stack
        match fault.kind:
            case "latency" | "black_hole" | "reset":
                backend, group = fault.target.split("@")
                proxy = stack.routes[int(group)].proxy(backend)
                if fault.kind == "reset":
                    proxy.reset_connections()
                    return
                if fault.kind == "latency":
                    proxy.add_latency(fault.latency_s)
                else:
                    proxy.black_hole()
                try:
                    await asyncio.sleep(fault.duration_s)
                finally:
                    proxy.heal()
            case "kill_9" | "sigstop":
                service = next(p for p in stack.processes if p.instance == fault.target)
                if service.process is None or fault.target in self._stopped:
                    return
                if fault.kind == "kill_9":
                    self._killed.add(fault.target)
                    signal_process(service.process.pid, signal.SIGKILL)
                    await asyncio.to_thread(service.process.wait)
                    try:
                        await asyncio.sleep(fault.duration_s)  # down this long before its restart
                    finally:
                        service.start()
                        self._killed.discard(fault.target)
                    return
                self._stopped[fault.target] = service
                signal_process(service.process.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(fault.duration_s)
                finally:
                    self._stopped.pop(fault.target, None)
                    if service.process is not None:
                        signal_process(service.process.pid, signal.SIGCONT)
            case "postgres_restart":
                async with self._server_lock:
                    assert stack.postgres is not None
                    await asyncio.to_thread(stack.postgres.restart)
            case "nats_restart":
                async with self._server_lock:
                    assert stack.nats is not None
                    await asyncio.to_thread(stack.nats.restart)

    async def cancel(self) -> None:
        """Stop the faults still running (each heals itself on the way out)."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def heal_all(self) -> None:
        """Every proxy passes traffic again, and every stopped process continues."""
        for routes in self.stack.routes.values():
            for backend in _BACKENDS:
                routes.proxy(backend).heal()
        for instance, service in list(self._stopped.items()):
            if service.process is not None:
                signal_process(service.process.pid, signal.SIGCONT)
            self._stopped.pop(instance, None)

    async def supervise(self) -> None:
        """Restart service processes that exited on their own, as Kubernetes would."""
        while True:
            for service in self.stack.processes:
                if service.exited() is not None and service.instance not in self._killed:
                    self.restarts += 1
                    self.exited.append(f"{service.instance} (exit {service.exited()})")
                    if not self.restart_exited:
                        self._killed.add(service.instance)  # left exited, counted once
                        continue
                    self.say(f"  {service.instance} exited ({service.exited()}); restarting")
                    service.start()
            await asyncio.sleep(_SUPERVISE_POLL_S)

"""The judge benchmark's simulator against kubesim's metrics in a real Prometheus, once.

`python -m benchmarks.judge_reality [--minutes M] [--apps N]` runs kubesim with N
applications of two pods each (canary and baseline, the seed's demo image rule: 1 %
errors, 20 requests/s a pod), a real Prometheus scraping them every second, waits M
minutes, then asks Prometheus what the analysis service would: the seed's
`grpc_error_rate` ratio (`sum(rate(…{grpc_code!="OK"}[1m])) / sum(rate(…[1m]))`) at the
5-minute interval's 30 s step, and the counts behind it (`increase(…[1m])` on
non-overlapping minutes). It prints the sample shapes that `benchmarks/judge.py`'s
simulator assumes (the comparison is in that module's docstring):

- `ratio_lag1_autocorrelation`: of the 30 s-step ratio samples (each minus its
  series' mean), pooled over series; the simulator's overlapping 1-minute windows give
  about 0.5 from the overlap alone, more with its per-variant drift;
- `count_dispersion`: the variance of the per-minute error counts of each series over
  their mean (1 for Poisson; the simulator's drift makes it larger);
- `log_ratio_sd_per_minute`: the spread of log(canary errors / baseline errors) per
  minute beside the Poisson prediction √(1/x + 1/y).

Needs the `prometheus` binary; about M minutes of wall time, little CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from benchmarks._report import print_report, progress
from kubesim import KubeSim
from kubesim.rules import ImageRule
from slipway_sandbox.prometheus import PrometheusServer

IMAGE = "registry.example/bucketeer/account:v1"


def deployment(app: str, variant: str) -> dict[str, Any]:
    """A Deployment of `app`'s `variant` for kubesim to run and expose metrics for."""
    labels = {"app": app, "pipecd.dev/variant": variant}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"{app}-{variant}", "namespace": "default"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "app", "image": IMAGE}]},
            },
        },
    }


async def query_range(
    session: aiohttp.ClientSession, url: str, query: str, start: float, end: float, step: float
) -> dict[tuple[str, str], list[float]]:
    """A Prometheus range query's series by (app, variant)."""
    params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    async with session.get(f"{url}/api/v1/query_range", params=params) as response:
        body = await response.json()
    out: dict[tuple[str, str], list[float]] = {}
    for series in body["data"]["result"]:
        key = (series["metric"].get("job", ""), series["metric"].get("pipecd_dev_variant", ""))
        out[key] = [float(v) for _, v in series["values"]]
    return out


def lag1(series: Sequence[Sequence[float]]) -> float:
    """The mean lag-1 autocorrelation of the series (how far samples are from independent)."""
    num = den = 0.0
    for values in series:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 3:
            continue
        mean = statistics.fmean(finite)
        centred = [v - mean for v in finite]
        num += sum(a * b for a, b in itertools.pairwise(centred))
        den += sum(a * a for a in centred)
    return num / den if den else math.nan


async def run(minutes: float, apps: int) -> dict[str, Any]:
    """Run canary/baseline pairs on kubesim with Prometheus and measure their series."""
    rule = ImageRule(image="*", error_rate=0.01, requests_per_second=20.0, ready_delay_s=0.0)
    async with KubeSim(rules=[rule], seed=20261207) as sim, aiohttp.ClientSession() as session:
        for a in range(apps):
            for variant in ("canary", "baseline"):
                async with session.post(
                    f"{sim.url}/apis/apps/v1/namespaces/default/deployments",
                    json=deployment(f"account{a}", variant),
                ) as response:
                    response.raise_for_status()
        # Its own temporary directory, removed when it stops.
        server = PrometheusServer(sd_url=f"{sim.url}/kubesim/targets")
        await asyncio.to_thread(server.start)
        try:
            start = time.time() + 90  # past the first scrapes and one rate window
            end = start + minutes * 60
            progress(f"traffic until {time.strftime('%H:%M:%S', time.localtime(end))}…")
            await asyncio.sleep(max(0.0, end - time.time() + 5))
            selector = 'grpc_server_handled_total{{grpc_code!="OK"{extra}}}'
            errors = selector.format(extra="")
            total = "grpc_server_handled_total"
            ratio = query_range(
                session,
                server.url,
                f"sum by (job, pipecd_dev_variant) (rate({errors}[1m])) / "
                f"sum by (job, pipecd_dev_variant) (rate({total}[1m]))",
                start,
                end,
                30,
            )
            error_counts = query_range(
                session,
                server.url,
                f"sum by (job, pipecd_dev_variant) (increase({errors}[1m]))",
                start + 60,
                end,
                60,
            )
            request_counts = query_range(
                session,
                server.url,
                f"sum by (job, pipecd_dev_variant) (increase({total}[1m]))",
                start + 60,
                end,
                60,
            )
            ratios, errs, reqs = await asyncio.gather(ratio, error_counts, request_counts)
        finally:
            await asyncio.to_thread(server.stop)
    dispersion = [
        statistics.variance(v) / statistics.fmean(v)
        for v in errs.values()
        if len(v) > 2 and statistics.fmean(v) > 0
    ]
    log_ratios: list[float] = []
    poisson: list[float] = []
    for a in range(apps):
        canary = errs.get((f"account{a}", "canary"), [])
        baseline = errs.get((f"account{a}", "baseline"), [])
        for x, y in zip(canary, baseline, strict=False):
            if x > 0 and y > 0:
                log_ratios.append(math.log(x / y))
                poisson.append(1 / x + 1 / y)
    all_requests = [v for values in reqs.values() for v in values]
    return {
        "series": len(ratios),
        "ratio_samples_per_series": round(statistics.fmean(len(v) for v in ratios.values()), 1),
        "ratio_lag1_autocorrelation": round(lag1(list(ratios.values())), 3),
        "count_dispersion": round(statistics.fmean(dispersion), 3) if dispersion else None,
        "errors_per_minute": round(statistics.fmean(v for x in errs.values() for v in x), 2),
        "requests_per_minute": round(statistics.fmean(all_requests), 1),
        "requests_per_minute_sd": round(statistics.stdev(all_requests), 2),
        "log_ratio_sd_per_minute": round(statistics.stdev(log_ratios), 3),
        "log_ratio_sd_poisson": round(math.sqrt(statistics.fmean(poisson)), 3),
    }


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.judge_reality", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic")
    parser.add_argument("--apps", type=int, default=8, help="canary/baseline pairs")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.minutes, args.apps))
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result, as_json=False, key_width=30)


if __name__ == "__main__":
    main()

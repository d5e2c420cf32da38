"""The load test's verdict: percentiles, error rate and achieved rate from the per-request samples, threshold
breaches, the JSON summary and the latency-over-time PNG."""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Thresholds:
    p95_ms: float = 100.0
    p99_ms: float = 150.0
    error_rate: float = 0.01
    min_rate_ratio: float = 0.9  # a run that did not deliver the load proves nothing about latency

    def as_json(self) -> dict[str, float]:
        return {"p95_ms": self.p95_ms, "p99_ms": self.p99_ms, "error_rate": self.error_rate,
                "min_rate_ratio": self.min_rate_ratio}


@dataclass
class Samples:
    start: np.ndarray  # epoch seconds
    name: np.ndarray
    service_ms: np.ndarray  # response time as the HTTP client measured it
    lag_ms: np.ndarray  # how late the request left against the user's schedule
    ok: np.ndarray
    status: np.ndarray

    @property
    def scheduled_ms(self) -> np.ndarray:
        """Latency from the moment the request was due (wrk2's "corrected" latency)."""
        return self.service_ms + self.lag_ms


def load_samples(directory: Path) -> Samples:
    rows: list[list[str]] = []
    for path in sorted(directory.glob("samples-*.csv")):
        with path.open(newline="") as f:
            rows.extend(r for r in csv.reader(f) if len(r) == 6)
    rows.sort(key=lambda r: float(r[0]))
    cols = list(zip(*rows, strict=True)) if rows else [(), (), (), (), (), ()]
    return Samples(np.array(cols[0], dtype=float), np.array(cols[1], dtype=object), np.array(cols[2], dtype=float),
                   np.array(cols[3], dtype=float), np.array(cols[4], dtype=int).astype(bool),
                   np.array(cols[5], dtype=int))


def _pct(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"p50": 0.0, "p95": 0.0, "p99": 0.0, "max": 0.0, "mean": 0.0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "p99": round(float(p99), 2),
            "max": round(float(values.max()), 2), "mean": round(float(values.mean()), 2)}


def _stats(s: Samples, mask: np.ndarray, duration: float) -> dict[str, Any]:
    n = int(mask.sum())
    errors = int((~s.ok[mask]).sum())
    return {"requests": n, "rate": round(n / duration, 1) if duration else 0.0, "errors": errors,
            "error_rate": round(errors / n, 5) if n else 0.0, "latency_ms": _pct(s.scheduled_ms[mask]),
            "service_latency_ms": _pct(s.service_ms[mask]),
            "status_codes": {str(k): v for k, v in sorted(Counter(s.status[mask].tolist()).items())}}


def summarise(s: Samples, target_rate: float, duration: float, limits: Thresholds) -> dict[str, Any]:
    """Overall and per-endpoint figures, and the list of breached thresholds (empty: passed)."""
    everything = np.ones(len(s.start), dtype=bool)
    overall = _stats(s, everything, duration)
    by_endpoint = {str(n): _stats(s, s.name == n, duration) for n in sorted(set(s.name.tolist()))}
    lat = overall["latency_ms"]
    breaches = []
    if overall["requests"] == 0:
        breaches.append("no request was recorded")
    if lat["p95"] >= limits.p95_ms:
        breaches.append(f"p95 {lat['p95']} ms >= {limits.p95_ms} ms")
    if lat["p99"] >= limits.p99_ms:
        breaches.append(f"p99 {lat['p99']} ms >= {limits.p99_ms} ms")
    if overall["error_rate"] >= limits.error_rate:
        breaches.append(f"error rate {overall['error_rate']:.4f} >= {limits.error_rate}")
    if overall["rate"] < limits.min_rate_ratio * target_rate:
        breaches.append(f"achieved {overall['rate']} req/s < {limits.min_rate_ratio} x target {target_rate} req/s")
    return {**overall, "by_endpoint": by_endpoint, "thresholds": limits.as_json(), "breaches": breaches,
            "passed": not breaches}


def timeline(s: Samples, bin_s: float = 1.0) -> dict[str, list[float]]:
    """Per-bin request rate, error count and scheduled-latency percentiles (for the plot and the JSON)."""
    if len(s.start) == 0:
        return {"t": [], "rate": [], "errors": [], "p50": [], "p95": [], "p99": [], "service_p95": []}
    rel = s.start - s.start.min()
    bins = (rel // bin_s).astype(int)
    lat = s.scheduled_ms
    out: dict[str, list[float]] = {"t": [], "rate": [], "errors": [], "p50": [], "p95": [], "p99": [],
                                   "service_p95": []}
    for b in range(int(bins.max()) + 1):
        m = bins == b
        if not m.any():
            continue
        p50, p95, p99 = np.percentile(lat[m], [50, 95, 99])
        out["t"].append(b * bin_s)
        out["rate"].append(float(m.sum()) / bin_s)
        out["errors"].append(float((~s.ok[m]).sum()))
        out["p50"].append(round(float(p50), 2))
        out["p95"].append(round(float(p95), 2))
        out["p99"].append(round(float(p99), 2))
        out["service_p95"].append(round(float(np.percentile(s.service_ms[m], 95)), 2))
    return out


def plot(tl: dict[str, list[float]], limits: Thresholds, target_rate: float, title: str, path: Path) -> None:
    """Latency percentiles (top) and achieved rate with errors (bottom) over the run, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, height_ratios=[2, 1])
    for key, colour in (("p50", "tab:green"), ("p95", "tab:orange"), ("p99", "tab:red")):
        top.plot(tl["t"], tl[key], label=key, color=colour, linewidth=1)
    top.plot(tl["t"], tl["service_p95"], label="p95 service time (no lateness)", color="tab:purple", linewidth=0.8,
             linestyle=":")
    top.axhline(limits.p95_ms, color="tab:orange", linestyle="--", linewidth=0.8, label=f"p95 limit {limits.p95_ms:g}")
    top.axhline(limits.p99_ms, color="tab:red", linestyle="--", linewidth=0.8, label=f"p99 limit {limits.p99_ms:g}")
    top.set_ylabel("latency from schedule (ms)")
    top.set_yscale("symlog", linthresh=10)
    top.set_ylim(bottom=0)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title, fontsize=10)
    bottom.plot(tl["t"], tl["rate"], color="tab:blue", linewidth=1, label="requests/s")
    bottom.axhline(target_rate, color="tab:blue", linestyle="--", linewidth=0.8, label=f"target {target_rate:g}/s")
    bottom.bar(tl["t"], tl["errors"], width=1.0, color="tab:red", alpha=0.6, label="errors/s")
    bottom.set_xlabel("seconds since start")
    bottom.set_ylabel("per second")
    bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

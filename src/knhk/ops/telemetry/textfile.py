"""Ledger verification results as a Prometheus text file, for verifications run outside the service.

``knhk receipts verify --metrics-file PATH`` (the CronJob, cron, an auditor's box) writes the two gauges the
service's own scheduled verification sets, declared in ``registry/metrics.yaml``: ``knhk_receipt_chain_valid``
and ``knhk_receipt_chain_verified_timestamp_seconds``, per log. The file is in the Prometheus text exposition
format 0.0.4 and is replaced atomically (written beside, then renamed), so node_exporter's textfile collector
or a Pushgateway upload never reads half of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from knhk.errors import UsageError

# (name, help) of the verification gauges; the service's own gauges (knhk.service.metrics) use the same
CHAIN_VALID = ("knhk_receipt_chain_valid", "1 when the last full verification of the log passed, else 0.")
CHAIN_VERIFIED_AT = ("knhk_receipt_chain_verified_timestamp_seconds",
                     "Unix time of the last full verification of the log.")


def write_verification(path: Path, valid: Mapping[str, bool], verified_at: float) -> None:
    """Write ``valid`` (log → did its full verification pass) verified at Unix time ``verified_at`` to ``path``."""
    registry = CollectorRegistry()
    chain_valid = Gauge(*CHAIN_VALID, ["log"], registry=registry)
    verified = Gauge(*CHAIN_VERIFIED_AT, ["log"], registry=registry)
    for log, ok in valid.items():
        chain_valid.labels(log).set(1 if ok else 0)
        verified.labels(log).set(verified_at)
    if not path.parent.is_dir():
        raise UsageError(f"--metrics-file {path}: the directory {path.parent} does not exist")
    try:
        write_to_textfile(str(path), registry)
    except OSError as exc:
        raise UsageError(f"--metrics-file {path}: cannot be written ({exc.strerror or exc})") from None

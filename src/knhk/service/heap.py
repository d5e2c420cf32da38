"""The garbage collector of a serving process (one app for the process's lifetime: ``app_factory``).

A batch of 1,000 observations allocates tens of thousands of short-lived containers (the parsed body, the
observations, the answer); with CPython's default first-generation threshold (700) every batch sets off dozens of
collections, and each older-generation one walks every object alive — the imported modules, the sector schemas,
the detection windows. py-spy saw that as 15-17 % of a worker's samples "in" the function building the answer.
So, once start-up is done, the start-up heap is frozen out of the collector's scans (:func:`gc.freeze`, the
pre-fork idiom: it is never garbage) and the first generation's threshold raised above what one batch keeps
alive, so a collection runs every few batches rather than many times in each. Reference counting frees almost
everything anyway; the collector is only there for cycles, and those still get collected.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("knhk.service")

THRESHOLDS = (50_000, 20, 10)  # (young generation, middle, old): collections of each per collection of the next


def settle() -> None:
    """After start-up: freeze what start-up built and raise the young generation's threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    log.info("start-up heap frozen (%d objects); collector thresholds %s", gc.get_freeze_count(), THRESHOLDS)

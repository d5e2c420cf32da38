"""The interpreter's thread switch interval in a serving process (one app for the process's lifetime).

A worker runs several Python threads at once: the event loop (reading bodies, the strict JSON parse), the
request threads (parsing and validating a batch) and the ledger sequencer, and most of what a request holds —
the observations lock, the ledger lock — is held across database round trips. A thread whose round trip has
answered must take the GIL back before it can send the next statement, and while another thread is running
Python code it waits for that thread's switch interval: CPython's default is 5 ms, so each round trip of the
lock holder could cost up to 5 ms more while a second request parses its batch in the same process (py-spy:
a batch's round trips under the lock, and the receipt drain's, stretched by that). A 0.5 ms interval gives a
waiting thread the GIL back ten times sooner; a CPU-bound thread is only interrupted when another one asks.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("knhk.service")

SWITCH_INTERVAL_S = 0.0005


def tune() -> None:
    """Set this process's thread switch interval (:data:`SWITCH_INTERVAL_S`)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    log.info("thread switch interval %g s", SWITCH_INTERVAL_S)

"""KNHK: provable, autonomic change control for a knowledge model.

Observations stream in, detectors find patterns, a proposer turns them into ontology changes (ΔΣ), a
validation pipeline decides, people approve where doctrine demands it, snapshots are promoted atomically,
and every decision lands in a signed, hash-chained, Merkle-logged receipt ledger (``knhk.ledger``).
"""

__version__ = "0.1.0"

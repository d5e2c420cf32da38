"""The public proof contract (SPEC §8): the formats an auditor checks offline, with no database.

``canonical`` (canonical JSON, equal to RFC 8785 on its domain), ``entry`` (payload, id, signature),
``signing`` (Ed25519, key ids), ``merkle`` (RFC 9162 trees, inclusion and consistency proofs),
``checkpoint`` (C2SP signed-note checkpoints) and ``bundle`` (offline proof bundles). A leaf package: it imports
nothing of KNHK but :mod:`knhk.errors` (an import-linter contract keeps it so), and every failed verification
raises :class:`knhk.errors.VerificationError`.
"""

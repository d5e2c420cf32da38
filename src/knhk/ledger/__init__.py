"""The receipt ledger (SPEC §8) as KNHK runs it: the sequencer (the one writer), the keyring, the verifier, the
typed receipt catalogue (``receipts``) and the ledger's SQL (``store``).

The formats themselves — canonical entries, signatures, Merkle proofs, checkpoints, bundles — are the public
contract in :mod:`knhk.proof`.
"""

"""The receipt ledger (SPEC §8): canonical entries, Ed25519 signatures, hash chain, RFC 9162 Merkle tree,
C2SP checkpoints, offline proof bundles and the verifier.

The formats here are KNHK's public contract: anyone holding a bundle or a checkpoint can check it with
these few modules and nothing else.
"""

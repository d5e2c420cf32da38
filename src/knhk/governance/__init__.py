"""Governance (SPEC §7): approvals with quorum and segregation of duties, guard relaxation requests."""

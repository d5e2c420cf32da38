"""Proposals (SPEC §5, Plan): ΔΣ, the rule-based proposer, proposal records."""

"""Ontology Σ and its snapshots (SPEC §4): Σ_core vocabulary, sector content, content-addressed immutable
snapshots in a version DAG with one current pointer per sector."""

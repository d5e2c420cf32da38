"""Observations (SPEC §2): the model and parser, conformance, hot-path guards, ingest and reads."""

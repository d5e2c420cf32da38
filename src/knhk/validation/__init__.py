"""Validation (SPEC §6, Execute): the seven-stage pipeline, invariants Q1–Q5, doctrines, shadow replay."""

"""The ``knhk`` command line (SPEC §13)."""

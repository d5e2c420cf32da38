"""The HTTP service (SPEC §10): the loop, the ledger and governance behind an authenticated JSON API."""

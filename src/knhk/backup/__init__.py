"""Backups that prove themselves (SPEC §11): create, verify, restore and list, on SQLite and PostgreSQL.

A backup is a directory holding the data (an SQLite file, a pg_dump archive, or a reference to a pgBackRest
backup set) and a ``manifest.json`` (:mod:`knhk.backup.manifest`): file digests, row counts per table, and
each ledger log's tree size, root and signed checkpoint at backup time. ``verify`` restores into scratch and
checks all of it (:mod:`knhk.backup.checks`); ``restore`` restores to a side location, verifies it the same
way and only then swaps it in atomically (:mod:`knhk.backup.swap`).
"""

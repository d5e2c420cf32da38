"""Storage: one interface over embedded SQLite and PostgreSQL, versioned migrations, append-only tables.

Domain packages never import a database driver; they receive a :class:`~knhk.storage.database.Database`
and use the SQL in the ``*_store`` modules here.
"""

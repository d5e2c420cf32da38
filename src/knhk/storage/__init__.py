"""Storage is the database: the driver over embedded SQLite and PostgreSQL (``database``), the versioned
migrations and their runner (``migrations/``, ``schema``), and the least-privilege application role (``roles``).

It knows no concept of KNHK. Each concept's SQL lives in that concept's ``store.py`` (``ledger/store.py``,
``observations/store.py``, ``ontology/store.py``, ``loop/store.py``, ``audit/store.py``, ``detection/store.py``),
which receives a :class:`~knhk.storage.database.Connection` from here.
"""

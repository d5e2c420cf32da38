"""The application layer: the one place the operations of KNHK are implemented for every face.

- :mod:`knhk.app.application` — :class:`~knhk.app.application.Application`, one method per operation
  (SPEC §10 routes, §13 commands), grouped by concept in ``observations``, ``proposals``, ``snapshots``,
  ``cycles``, ``ledger``, ``audit`` and ``system``;
- :mod:`knhk.app.access` — the operation catalogue (each with its one permission) and the access policies;
- :mod:`knhk.app.runtime` — the wiring of one process (database, ledger, registry, loop …), held privately by
  the application: faces never reach into it;
- :mod:`knhk.app.demo` — the scripted replay of ``knhk demo``.

Rule for a newcomer: **a new operation is a method in the concept's module here, starting with
``self._allow(actor, OPERATION)`` for a line of the catalogue in ``access.py``; faces only call it.**
"""

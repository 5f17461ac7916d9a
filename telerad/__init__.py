"""Telerad core: configuration, database, the alliance's sites and users, events, the command line.

Everything else stands on this package and nothing here imports the packages
above it, except the assembly modules at the top (``cli``, ``supervisor``,
``web``, ``worker``, and the migrations' environment).

- :mod:`telerad.config` — ``load_config`` and the validated ``Config``
- :mod:`telerad.db` — ``Base``, ``make_engine``, ``upgrade`` (Alembic)
- :mod:`telerad.sites`, :mod:`telerad.users` — the alliance tree, users, tokens
- :mod:`telerad.events` — the transactional outbox, ``publish``/``subscribe``
- :mod:`telerad.audit` — the append-only record of who did what
- :mod:`telerad.clock` — the one clock (tests drive it)
"""

"""Durable state: the SQLite store, its rows, connection, group commit, migrations,
statistics and workspaces."""

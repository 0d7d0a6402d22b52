"""The PostgreSQL scratch database of an in-process benchmark (bench_resources, bench_dashboard): dropped after."""

from __future__ import annotations

import psycopg
from django.db import connections


def drop_scratch_database(name: str) -> None:
    """Close this process's connections, then drop ``name`` on 127.0.0.1 (as user postgres) if it exists."""
    connections.close_all()
    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")

"""Saves of models outside the project's app registry never load the exposure catalog.

The migration recorder saves a row of its own ``Migration`` model after each migration; when that save loaded
the catalog, ``migrate`` from an empty database failed at the first migration applied before a column the
current ``ModelExposure`` has (``no such column: mcp_app_modelexposure.listed``).
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.test.utils import CaptureQueriesContext

from mcp_app.conf import mcp_settings

pytestmark = pytest.mark.django_db


def test_migration_recorder_rows_do_not_load_the_catalog() -> None:
    mcp_settings.PROVIDER.invalidate()
    with CaptureQueriesContext(connection) as queries:
        MigrationRecorder(connection).record_applied("some_app", "0001_initial")
    assert not [q["sql"] for q in queries if "mcp_app_modelexposure" in q["sql"]]
    assert MigrationRecorder(connection).migration_qs.filter(app="some_app").exists()

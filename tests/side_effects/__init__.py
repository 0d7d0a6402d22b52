"""A tool whose side effect lands outside the database, for the database outage test
(tests/db_outage_settings.py, tests/transports/test_db_outage.py)."""

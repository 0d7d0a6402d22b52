"""A resource whose reads cost real time, for the tests of batches and fairness (tests/batch_settings.py)."""

"""The flow tests share the session's Prefect server and trained run (tests/conftest.py)."""

"""The local services: `sparks up` / `down` (`services.py`: Prefect server, MLflow server,
PostgreSQL, the worker, the deployments) and the Prefect server sparks starts
(`prefect_server.py`: SQLite transactions that take the write lock first)."""

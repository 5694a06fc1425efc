"""Logging: MLflow runs (with a local fallback) and the figures people look at."""

"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/compare.py."""

from sparks.flows.compare import compare

__all__ = ["compare"]

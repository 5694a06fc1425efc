"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/analyze.py."""

from sparks.flows.analyze import analyze

__all__ = ["analyze"]

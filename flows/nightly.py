"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/nightly.py."""

from sparks.flows.nightly import nightly

__all__ = ["nightly"]

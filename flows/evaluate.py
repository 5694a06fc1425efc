"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/evaluate.py."""

from sparks.flows.evaluate import evaluate_checkpoints

__all__ = ["evaluate_checkpoints"]

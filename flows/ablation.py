"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/ablation.py."""

from sparks.flows.ablation import ablation_study

__all__ = ["ablation_study"]

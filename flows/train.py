"""Deployment entry point (flows/prefect.yaml): the flow lives in sparks/flows/train.py."""

from sparks.flows.train import post_train

__all__ = ["post_train"]

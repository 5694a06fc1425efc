"""Tracking heads across saves: the checkpoint hook and the head ledger."""

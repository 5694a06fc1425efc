"""Evaluation: benchmarks, generation (vLLM or transformers), grading, head interventions."""

"""How answers are sampled, declared once: `SamplingSpec`.

Both generation backends take it; the run config's `evaluation:` section extends it
(`config.EvaluationSettings`) with what to evaluate and when; the CLI's sampling flags take their
defaults and ranges from its fields. pydantic only: no torch at import.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class SamplingSpec(BaseModel):
    """Sampling settings shared by both backends. temperature 0 means greedy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int = Field(1, ge=1, le=1024, description="Samples per problem.")
    temperature: float = Field(0.6, ge=0, description="Sampling temperature (0 = greedy).")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_tokens: int = Field(
        96, ge=1, description="Max new tokens per sample (vLLM's default is 16)."
    )
    seed: int = Field(0, ge=0, description="Sampling seed.")
    tensor_parallel_size: int = Field(
        1, ge=1, description="vLLM: GPUs one engine spreads a large model over."
    )
    gpu_memory_utilization: float = Field(
        0.9,
        gt=0,
        le=1,
        description="vLLM: share of each GPU's memory the engine may take (lower it when "
        "evaluating beside training on the same GPU).",
    )

    def sampling(self, **changes: Any) -> SamplingSpec:
        """The sampling fields alone (of a subclass's settings too), with `changes`."""
        fields = self.model_dump(include=set(SamplingSpec.model_fields))
        return SamplingSpec.model_validate(fields | changes)


DEFAULT_SAMPLING = SamplingSpec()

"""What a circuit snapshot measures, declared once: `SnapshotSpec`.

The run config's `snapshot:` section is this spec plus where it runs (`config.SnapshotSettings`
extends it); the checkpoint hook, `snapshot_checkpoint`, `build_snapshot` and `attribute_auto`
take it; process mode hands it to its child as JSON; the CLI's flags take their defaults and
ranges from its fields. pydantic only: no torch at import.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_IG_STEPS = 81  # steps auto's cap: midpoint's 4th tripling (3, 9, 27, 81)
SCHEDULES = ("midpoint", "gauss", "right", "left")
Schedule = Literal["midpoint", "gauss", "right", "left"]
MetricName = Literal["auto", "logit_diff", "logprob", "kl", "kl_prefix"]


class SnapshotSpec(BaseModel):
    """How every save's circuit is measured: attribution (IG steps, quadrature, metric), the
    circuit's size and the pairs it is measured on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: Annotated[int, Field(ge=1, le=1000)] | Literal["auto"] = Field(
        "auto",
        description="Integrated-gradient steps (1 = plain EAP), or auto (the default): raised "
        "until the completeness error is within steps_tolerance and the top-k edges hold still "
        "(sparks/circuits/steps.py). No fixed count held 2 % at every save of the demo.",
    )
    schedule: Schedule = Field(
        "midpoint",
        description="IG quadrature: midpoint (k + 1/2)/m, gauss (Gauss-Legendre), right k/m "
        "(k=1..m) or left k/m (k=0..m-1, hannamw/EAP-IG's). docs/real-models.md, IG quadrature, "
        "says why midpoint is the default (chosen from benchmarks/ig_steps.py).",
    )
    steps_tolerance: float = Field(
        0.02, gt=0, le=1, description="steps auto: completeness error to reach (0.02 = 2 %)."
    )
    max_steps: int = Field(
        MAX_IG_STEPS,
        ge=1,
        le=1000,
        description="steps auto: the cap; a save that reaches it is flagged.",
    )
    metric: MetricName = Field(
        "auto",
        description="auto: logit_diff on pairs with answers, kl_prefix on contrast pairs, else kl.",
    )
    top_k: int = Field(200, ge=1, description="Edges kept in the circuit (by |score|).")
    n_pairs: int = Field(
        32, ge=1, description="Prompt pairs per snapshot (the first N of the file)."
    )
    batch_size: int = Field(16, ge=1, description="Pairs per batch.")
    tokens_per_pass: int | None = Field(
        None,
        ge=1,
        description="Most tokens in one forward/backward pass; default: sized from free memory. "
        "Lower it if snapshots run out of memory.",
    )
    device: str | None = Field(
        None,
        description="Device for a snapshot from disk (process mode, `sparks snapshot`), e.g. cuda:1.",
    )

    def with_(self, **changes: Any) -> SnapshotSpec:
        """This spec with some fields changed, validated again (the `steps` of one call, a metric
        chosen for a pair set)."""
        return type(self).model_validate(self.model_dump() | changes)

    def snapshot_fields(self) -> SnapshotSpec:
        """The spec alone, without a subclass's other settings (what a child process is given)."""
        return SnapshotSpec.model_validate(self.model_dump(include=set(SnapshotSpec.model_fields)))


DEFAULTS = SnapshotSpec()
DEFAULT_SCHEDULE = DEFAULTS.schedule

"""An ablation or scaling study read problem by problem: what strengthened (or removed) heads do
to easy and hard problems.

Inputs: each variant's per-sample tables (`sparks.evaluate.metrics.grade`, one per benchmark;
the baseline is the unedited model) and the problems. Outputs are pure tables:

1. difficulty: one bucket per problem, the first rule that applies:
   a. its own `level` or `difficulty` field (the world's levels, MATH-style "Level 4"):
      bucket `level 1`, `level 2`, ...;
   b. the baseline's pass rate over its samples (with at least `MIN_SAMPLES` samples a problem):
      `easy` >= EASY_AT > `medium` >= HARD_BELOW > `hard`;
   c. the benchmark's name (one sample a problem cannot grade difficulty).
2. pass@1 per variant x benchmark x bucket, with a 95 % bootstrap interval over problems;
3. flips against the baseline: a problem is solved when at least half its samples are correct;
   `solved -> failed` and `failed -> solved` per variant, with an exact two-sided McNemar test
   (a binomial test on the discordant problems: are flips one way as likely as the other?);
4. failure modes (`sparks.studies.failures`) per variant x bucket x mode, and response length.
"""

from __future__ import annotations

import re
from math import comb

import numpy as np
import pandas as pd

from sparks.evaluate.metrics import bootstrap_ci
from sparks.studies.failures import MODES, classify

EASY_AT = 0.7  # baseline pass rate at or above: easy
HARD_BELOW = 0.3  # below: hard; in between: medium
MIN_SAMPLES = 2  # samples a problem needs for its pass rate to grade its difficulty
BASELINE = "baseline"


def difficulty(problems: dict[str, list[dict]], baseline: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per problem the baseline measured: benchmark, problem_id, bucket, rule
    ('level' | 'pass rate' | 'benchmark'). What it did not measure is in `skipped_problems`."""
    rows = []
    for bench, probs in problems.items():
        table = baseline.get(bench)
        if table is None:
            continue
        rates = table.groupby("problem_id")["correct"].agg(["mean", "size"])
        for p in probs:
            if p["id"] not in rates.index:
                continue
            level = p.get("level", p.get("difficulty"))
            if level is not None and str(level).strip():
                digits = re.findall(r"\d+", str(level))
                rows.append((bench, p["id"], f"level {digits[0] if digits else level}", "level"))
            elif p["id"] in rates.index and rates.loc[p["id"], "size"] >= MIN_SAMPLES:
                rate = rates.loc[p["id"], "mean"]
                bucket = "easy" if rate >= EASY_AT else "hard" if rate < HARD_BELOW else "medium"
                rows.append((bench, p["id"], bucket, "pass rate"))
            else:
                rows.append((bench, p["id"], bench, "benchmark"))
    return pd.DataFrame(rows, columns=["benchmark", "problem_id", "bucket", "rule"])


NOT_EVALUATED = "not evaluated"  # a problem without samples and without a recorded reason


def skipped_problems(
    problems: dict[str, list[dict]],
    samples: dict[str, dict[str, pd.DataFrame]],
    reasons: dict[str, dict[str, dict[str, list[str]]]],
) -> pd.DataFrame:
    """One row per problem a variant did not measure: variant, benchmark, problem_id, reason
    (the recorded one, e.g. "over-long prompt", else "not evaluated")."""
    rows = []
    for variant, tables in samples.items():
        for bench, probs in problems.items():
            table = tables.get(bench)
            seen = set(table["problem_id"]) if table is not None else set()
            why = {
                pid: r for r, ids in reasons.get(variant, {}).get(bench, {}).items() for pid in ids
            }
            rows += [
                (variant, bench, p["id"], why.get(p["id"], NOT_EVALUATED))
                for p in probs
                if p["id"] not in seen
            ]
    return pd.DataFrame(rows, columns=["variant", "benchmark", "problem_id", "reason"])


def skipped_counts(skipped: pd.DataFrame) -> pd.DataFrame:
    """variant, benchmark, reason, problems: how many problems each variant did not measure."""
    cols = ["variant", "benchmark", "reason"]
    if skipped.empty:
        return pd.DataFrame(columns=[*cols, "problems"])
    return skipped.groupby(cols, sort=False).size().rename("problems").reset_index()


def _per_problem(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """benchmark, problem_id, rate (correct share of its samples) of one variant."""
    parts = [
        t.groupby("problem_id", sort=False)["correct"].mean().rename("rate").reset_index()
        .assign(benchmark=b)
        for b, t in tables.items()
    ]  # fmt: skip
    return pd.concat(parts, ignore_index=True)


def pass_by_bucket(
    variants: dict[str, dict[str, pd.DataFrame]], buckets: pd.DataFrame, *, seed: int = 0
) -> pd.DataFrame:
    """pass@1 with a 95 % bootstrap interval for every variant x benchmark x bucket."""
    rows = []
    for name, tables in variants.items():
        per = _per_problem(tables).merge(buckets, on=["benchmark", "problem_id"])
        for (bench, bucket), g in per.groupby(["benchmark", "bucket"], sort=True):
            acc = g["rate"].to_numpy()
            lo, hi = bootstrap_ci(acc, seed=seed)
            rows.append(
                {"variant": name, "benchmark": bench, "bucket": bucket, "problems": len(acc),
                 "pass@1": float(acc.mean()), "ci_low": lo, "ci_high": hi}
            )  # fmt: skip
    return pd.DataFrame(rows)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b flips one way and c the other.

    >>> mcnemar_exact(0, 0), round(mcnemar_exact(0, 6), 4), round(mcnemar_exact(3, 4), 4)
    (1.0, 0.0312, 1.0)
    """
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def flips(
    variants: dict[str, dict[str, pd.DataFrame]], buckets: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(every flipped problem of every variant against the baseline, and per variant x benchmark:
    solved->failed, failed->solved and the exact McNemar p-value)."""
    base = _per_problem(variants[BASELINE]).rename(columns={"rate": "baseline_rate"})
    flipped, tests = [], []
    for name, tables in variants.items():
        if name == BASELINE:
            continue
        per = base.merge(_per_problem(tables), on=["benchmark", "problem_id"])
        per = per.merge(buckets, on=["benchmark", "problem_id"])
        was, now = per["baseline_rate"] >= 0.5, per["rate"] >= 0.5
        per["flip"] = np.where(
            was & ~now, "solved->failed", np.where(~was & now, "failed->solved", "")
        )
        flipped.append(per[per["flip"] != ""].assign(variant=name))
        for bench, g in per.groupby("benchmark", sort=True):
            lost, gained = (
                int((g["flip"] == "solved->failed").sum()),
                int((g["flip"] == "failed->solved").sum()),
            )
            tests.append(
                {"variant": name, "benchmark": bench, "problems": len(g),
                 "solved->failed": lost, "failed->solved": gained,
                 "p_value": mcnemar_exact(lost, gained)}
            )  # fmt: skip
    cols = ["variant", "benchmark", "problem_id", "bucket", "baseline_rate", "rate", "flip"]
    table = pd.concat(flipped, ignore_index=True)[cols] if flipped else pd.DataFrame(columns=cols)
    return table, pd.DataFrame(tests)


def with_modes(table: pd.DataFrame) -> pd.DataFrame:
    """A per-sample table (with `response`) plus each sample's failure `mode`, `evidence`, the
    slip's `true_value`, and the characters to mark (`mark_start`, `mark_end`)."""
    found = [
        classify(r, str(g), truncated=bool(t))
        for r, g, t in zip(table["response"], table["gold"], table["truncated"], strict=True)
    ]
    return table.assign(
        mode=[f.mode for f in found],
        evidence=[f.evidence for f in found],
        true_value=[f.true_value for f in found],
        mark_start=[f.start for f in found],
        mark_end=[f.end for f in found],
    )


def mode_counts(
    variants: dict[str, dict[str, pd.DataFrame]], buckets: pd.DataFrame
) -> pd.DataFrame:
    """Samples per variant x benchmark x bucket x mode (every mode, zeros included), with their
    share of the bucket's samples and mean length."""
    rows = []
    for name, tables in variants.items():
        for bench, t in tables.items():
            t = t.merge(buckets[buckets.benchmark == bench], on="problem_id")
            for bucket, g in t.groupby("bucket", sort=True):
                for mode in MODES:
                    m = g[g["mode"] == mode]
                    rows.append(
                        {"variant": name, "benchmark": bench, "bucket": bucket, "mode": mode,
                         "samples": len(m), "share": len(m) / len(g),
                         "mean_length": float(m["length"].mean()) if len(m) else float("nan")}
                    )  # fmt: skip
    return pd.DataFrame(rows)

"""Grading samples and the metrics the field reports, as pure functions over a per-sample table.

pass@1 is the mean over problems of (correct samples / n), over all n samples, not only the first
(Qwen's evaluate.py reports the first). pass@k is the unbiased estimator of Chen et al. (2021).
maj@k votes on the extracted answers of the first k samples. One AIME'24 problem is 3.3 points,
so pass@1 comes with a 95 % bootstrap interval over problems.
"""

from __future__ import annotations

from collections import Counter
from math import comb

import numpy as np
import pandas as pd

from sparks.problems.grading import final_answer, is_correct


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples (drawn from n with c correct) is correct.

    >>> pass_at_k(4, 1, 1), pass_at_k(4, 1, 4), pass_at_k(4, 0, 2)
    (0.25, 1.0, 0.0)
    """
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def bootstrap_ci(acc: np.ndarray, *, seed: int = 0) -> tuple[float, float]:
    """95 % bootstrap interval of the mean of per-problem accuracies (1000 resamples of problems)."""
    rng = np.random.default_rng(seed)
    boot = acc[rng.integers(0, len(acc), size=(1000, len(acc)))].mean(1)
    return float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))


def paired_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value that per-problem scores `a` and `b` (same problems, same order) differ:
    the Wilcoxon signed-rank test on the non-zero differences; 1.0 when none differ.

    >>> paired_p(np.array([1.0, 0.5, 1.0]), np.array([1.0, 0.5, 1.0]))
    1.0
    >>> round(paired_p(np.ones(12), np.zeros(12)), 5)
    0.00049
    """
    from scipy.stats import wilcoxon

    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d, zero_method="wilcox").pvalue)


def grade(problems: list[dict], completions: list[list]) -> pd.DataFrame:
    """One row per sample: problem_id, sample, gold, answer (extracted), correct, length (tokens),
    truncated, and the response itself (what failure modes and the sample viewer read)."""
    rows = []
    for p, samples in zip(problems, completions, strict=True):
        for j, c in enumerate(samples):
            rows.append(
                {
                    "problem_id": p["id"],
                    "sample": j,
                    "gold": p["answer"],
                    "answer": final_answer(c.text),
                    "correct": is_correct(c.text, p["answer"]),
                    "length": c.n_tokens,
                    "truncated": c.truncated,
                    "response": c.text,
                }
            )
    return pd.DataFrame(rows)


def _majority_correct(group: pd.DataFrame, k: int) -> bool:
    first = group.sort_values("sample").head(k)
    answers = [a.strip() for a in first["answer"] if isinstance(a, str) and a.strip()]
    if not answers:
        return False
    top = Counter(answers).most_common(1)[0][0]
    return bool(first.loc[first["answer"].str.strip() == top, "correct"].iloc[0])


def summarise(
    table: pd.DataFrame, *, ks: tuple[int, ...] = (1, 4, 8, 16, 64), seed: int = 0
) -> dict:
    """Metrics of one benchmark from its per-sample table."""
    per = table.groupby("problem_id", sort=False).agg(n=("correct", "size"), c=("correct", "sum"))
    n = int(per.n.min())
    acc = (per.c / per.n).to_numpy()
    low, high = bootstrap_ci(acc, seed=seed)
    out = {
        "pass@1": float(acc.mean()),
        "pass@1_ci_low": low,
        "pass@1_ci_high": high,
        "mean_length": float(table["length"].mean()),
        "truncation_rate": float(table["truncated"].mean()),
        "problems": len(per),
        "samples_per_problem": n,
    }
    for k in sorted(set(ks) | {n}):  # pass@n and maj@n always, whatever n is
        if 1 < k <= n:
            out[f"pass@{k}"] = float(
                np.mean([pass_at_k(int(r.n), int(r.c), k) for r in per.itertuples()])
            )
            out[f"maj@{k}"] = float(
                np.mean(
                    [_majority_correct(g, k) for _, g in table.groupby("problem_id", sort=False)]
                )
            )
    return out

"""The sample viewer of a study: one HTML page to read what changed.

For every problem a variant flipped against the baseline (solved -> failed or failed -> solved),
the problem, its gold answer and difficulty bucket, then the baseline's and the variant's response
side by side, each with its failure mode named and its evidence highlighted (the looping span, the
first false equation). One self-contained file, no scripts: it opens from disk, from MLflow's
artifact view, or in a test's browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from sparks.files import atomic_write_text, render_template

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:1.5em;max-width:1400px}
img.figure{max-width:100%;display:block;margin:.5em 0}
h1{font-size:1.3em} h2{font-size:1.05em;margin:1.6em 0 .3em}
.pair{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.side{border:1px solid #ccc;border-radius:6px;padding:.6em;overflow-wrap:anywhere}
.side h3{font-size:.95em;margin:0 0 .4em}
pre{white-space:pre-wrap;margin:0;font:12.5px/1.4 ui-monospace,monospace}
mark{background:#ffd54f;padding:0 .1em}
.mode{display:inline-block;border-radius:4px;padding:0 .4em;color:#fff;font-size:.85em}
.correct{background:#2e7d32}.loop{background:#6a1b9a}.no_answer{background:#616161}
.arithmetic{background:#c62828}.wrong_answer{background:#ef6c00}
.lost{color:#c62828}.gained{color:#2e7d32}
table{border-collapse:collapse} td,th{border:1px solid #ccc;padding:.2em .5em;text-align:right}
"""


def _label(benchmark: str, problem_id: str) -> str:
    """`aime24-7`, not `aime24 aime24-7`: loaded ids already carry their benchmark."""
    return problem_id if problem_id.startswith(f"{benchmark}-") else f"{benchmark} {problem_id}"


def _side(title: str, sample: pd.Series | None) -> dict:
    """One side of a flip for the template: the sample's mode, answer, evidence and response,
    split around the marked span (every copy of a loop, or the slip)."""
    if sample is None:
        return {"title": title, "sample": None}
    text = str(sample["response"])
    start, end = int(sample.get("mark_start") or 0), int(sample.get("mark_end") or 0)
    if not 0 <= start < end <= len(text):
        start = end = len(text)
    answer = sample["answer"] if isinstance(sample["answer"], str) else None
    return {
        "title": title,
        "sample": {
            "mode": sample["mode"],
            "answer": answer,
            "length": int(sample["length"]),
            "truncated": bool(sample["truncated"]),
            "evidence": (sample.get("evidence") or "")[:120],
            "true_value": str(sample["true_value"]) if sample.get("true_value") else "",
            "before": text[:start],
            "marked": text[start:end],
            "after": text[end:],
        },
    }


def _shown(samples: pd.DataFrame, flip: str, side: str) -> pd.Series | None:
    """The sample that shows the flip: on the losing side a failed one, on the winning a correct
    one (else the first)."""
    if samples.empty:
        return None
    want = (flip == "solved->failed") == (side == "baseline")
    hits = samples[samples["correct"] == want]
    return (hits if len(hits) else samples).sort_values("sample").iloc[0]


def write_viewer(
    path: Path,
    *,
    title: str,
    flipped: pd.DataFrame,
    tests: pd.DataFrame,
    samples: dict[str, dict[str, pd.DataFrame]],
    problems: dict[str, list[dict]],
    skipped: pd.DataFrame | None = None,
    figures: Sequence[str] = (),
) -> Path:
    """Write the study's sample viewer to `path` (atomically) and return it. `samples`:
    variant -> benchmark -> per-sample table with response, mode and evidence; `figures`: image
    files beside `path` shown at the top; `skipped`: what each variant did not measure."""
    text = {(b, p["id"]): p["problem"] for b, ps in problems.items() for p in ps}
    flips = []
    for r in flipped.itertuples():
        base = samples["baseline"][r.benchmark]
        var = samples[r.variant][r.benchmark]
        gold = base.loc[base.problem_id == r.problem_id, "gold"]
        flips.append(
            {
                "variant": r.variant,
                "problem_id": str(r.problem_id),
                "kind": "lost" if r.flip == "solved->failed" else "gained",
                "flip": r.flip,
                "label": _label(r.benchmark, str(r.problem_id)),
                "bucket": r.bucket,
                "baseline_rate": f"{r.baseline_rate:.0%}",
                "rate": f"{r.rate:.0%}",
                "problem": text.get((r.benchmark, r.problem_id), ""),
                "gold": str(gold.iloc[0]) if len(gold) else "?",
                "baseline": _side(
                    "baseline", _shown(base[base.problem_id == r.problem_id], r.flip, "baseline")
                ),
                "variant_side": _side(
                    r.variant, _shown(var[var.problem_id == r.problem_id], r.flip, "variant")
                ),
            }
        )
    page = render_template(
        "sparks.studies",
        "viewer.html.jinja",
        title=title,
        style=Markup(_STYLE),
        figures=list(figures),
        skipped=skipped.to_dict("records") if skipped is not None and len(skipped) else [],
        tests=[
            {
                "variant": r["variant"],
                "benchmark": r["benchmark"],
                "problems": r["problems"],
                "lost": r["solved->failed"],
                "gained": r["failed->solved"],
                "p": f"{r['p_value']:.3g}",
            }
            for r in tests.to_dict("records")
        ],
        flips=flips,
    )
    atomic_write_text(Path(path), page)
    return Path(path)

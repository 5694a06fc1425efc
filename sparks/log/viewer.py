"""The sample viewer of a study: one HTML page to read what changed.

For every problem a variant flipped against the baseline (solved -> failed or failed -> solved),
the problem, its gold answer and difficulty bucket, then the baseline's and the variant's response
side by side, each with its failure mode named and its evidence highlighted (the looping span, the
first false equation). One self-contained file, no scripts: it opens from disk, from MLflow's
artifact view, or in a test's browser.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from sparks.files import atomic_write_text

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


def _highlight(text: str, start: int, end: int) -> str:
    """`text` escaped, with characters [start, end) marked (every copy of a loop, or the slip)."""
    if not 0 <= start < end <= len(text):
        return html.escape(text)
    return (
        html.escape(text[:start])
        + f"<mark>{html.escape(text[start:end])}</mark>"
        + html.escape(text[end:])
    )


def _label(benchmark: str, problem_id: str) -> str:
    """`aime24-7`, not `aime24 aime24-7`: loaded ids already carry their benchmark."""
    return problem_id if problem_id.startswith(f"{benchmark}-") else f"{benchmark} {problem_id}"


def _side(title: str, sample: pd.Series | None) -> str:
    if sample is None:
        return f'<div class="side"><h3>{html.escape(title)}</h3><p>no sample</p></div>'
    mode = sample["mode"]
    evidence = sample.get("evidence") or ""
    answer = sample["answer"] if isinstance(sample["answer"], str) else None
    why = f" &mdash; evidence: <code>{html.escape(evidence[:120])}</code>" if evidence else ""
    if sample.get("true_value"):
        why += f", true value <code>{html.escape(str(sample['true_value']))}</code>"
    start, end = int(sample.get("mark_start") or 0), int(sample.get("mark_end") or 0)
    return (
        f'<div class="side"><h3>{html.escape(title)}: <span class="mode {mode}">{mode}</span>'
        + (f" answer <code>{html.escape(answer)}</code>," if answer else " no boxed answer,")
        + f" {int(sample['length'])} "
        f"tokens{', truncated' if sample['truncated'] else ''}{why}</h3>"
        f"<pre>{_highlight(str(sample['response']), start, end)}</pre></div>"
    )


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
    figures: list[str] = (),
) -> Path:
    """Write the study's sample viewer to `path` (atomically) and return it. `samples`:
    variant -> benchmark -> per-sample table with response, mode and evidence; `figures`: image
    files beside `path` shown at the top; `skipped`: what each variant did not measure."""
    text = {(b, p["id"]): p["problem"] for b, ps in problems.items() for p in ps}
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts += [
        f'<img class="figure" src="{html.escape(f)}" alt="{html.escape(f)}">' for f in figures
    ]
    if skipped is not None and len(skipped):
        parts.append(
            '<table class="skipped"><tr><th>variant</th><th>benchmark</th><th>not measured</th>'
            "<th>why</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(r['variant'])}</td><td>{html.escape(r['benchmark'])}</td>"
                f"<td>{r['problems']}</td><td>{html.escape(r['reason'])}</td></tr>"
                for r in skipped.to_dict("records")
            )
            + "</table>"
        )
    if len(tests):
        parts.append(
            "<table><tr><th>variant</th><th>benchmark</th><th>problems</th>"
            "<th>solved&rarr;failed</th><th>failed&rarr;solved</th><th>McNemar p</th></tr>"
            + "".join(
                f"<tr><td>{html.escape(r['variant'])}</td><td>{html.escape(r['benchmark'])}</td>"
                f"<td>{r['problems']}</td><td>{r['solved->failed']}</td>"
                f"<td>{r['failed->solved']}</td><td>{r['p_value']:.3g}</td></tr>"
                for r in tests.to_dict("records")
            )
            + "</table>"
        )
    if flipped.empty:
        parts.append("<p>No problem flipped: every variant solves what the baseline solves.</p>")
    for r in flipped.itertuples():
        base = samples["baseline"][r.benchmark]
        var = samples[r.variant][r.benchmark]
        kind = "lost" if r.flip == "solved->failed" else "gained"
        gold = base.loc[base.problem_id == r.problem_id, "gold"]
        parts.append(
            f'<section class="flip" data-variant="{html.escape(r.variant)}" '
            f'data-problem="{html.escape(str(r.problem_id))}">'
            f'<h2><span class="{kind}">{r.flip}</span> &middot; {html.escape(r.variant)} &middot; '
            f"{html.escape(_label(r.benchmark, str(r.problem_id)))} ({html.escape(r.bucket)}"
            f", baseline {r.baseline_rate:.0%} &rarr; {r.rate:.0%})</h2>"
            f"<p>{html.escape(text.get((r.benchmark, r.problem_id), ''))} &mdash; gold "
            f"<code>{html.escape(str(gold.iloc[0]) if len(gold) else '?')}</code></p>"
            '<div class="pair">'
            + _side("baseline", _shown(base[base.problem_id == r.problem_id], r.flip, "baseline"))
            + _side(r.variant, _shown(var[var.problem_id == r.problem_id], r.flip, "variant"))
            + "</div></section>"
        )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    atomic_write_text(Path(path), page)
    return Path(path)

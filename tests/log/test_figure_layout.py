"""Figures read at a glance: titles and legends inside the canvas and off the data, checked with
matplotlib's own extents (`layout_problems`), and one colour per status in every panel and run."""

from __future__ import annotations

import logging

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from sparks.analysis import report_figures
from sparks.log import run_figures as figures

LONG_TITLE = (
    "grpo-ablation: /work/runs/nightly-2026-12-04/grpo/checkpoint-480, heads L0H0, L0H1, L1H2, "
    "L2H3, L3H1, L3H2, L2H0, L1H1 (+4)"
)


def _by_bucket(benches):
    rows = []
    for bench in benches:
        for variant, shift in (("baseline", 0.0), ("scale_0", -0.4), ("scale_2", -0.2)):
            for i, bucket in enumerate(("level 1", "level 2", "level 3")):
                p = max(0.0, 0.95 - 0.3 * i + shift)
                rows.append({"variant": variant, "benchmark": bench, "bucket": bucket,
                             "pass@1": p, "ci_low": max(0, p - 0.05), "ci_high": min(1, p + 0.05),
                             "problems": 40})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_checker_sees_a_cut_title_and_a_legend_over_bars():
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.bar([0, 1, 2], [1.0, 1.0, 1.0])
    ax.legend(["share"], loc="upper left")
    fig.suptitle(LONG_TITLE)
    problems = figures.layout_problems(fig)
    plt.close(fig)
    assert "the figure's title leaves the canvas" in problems
    assert "a legend covers data in panel 0" in problems


@pytest.mark.parametrize("benches", [["world"], ["aime24", "amc23", "world"]])
def test_the_tradeoff_figure_keeps_its_title_and_legends_inside_and_off_the_lines(benches):
    controls = pd.DataFrame(
        [{"benchmark": b, "bucket": "level 1", "scale": 0.0, "pass@1": 0.3} for b in benches]
    )
    scales = {"baseline": 1.0, "scale_0": 0.0, "scale_2": 2.0}
    fig = figures.draw_tradeoff(_by_bucket(benches), scales, title=LONG_TITLE, controls=controls)
    assert figures.layout_problems(fig) == []
    assert " ".join(fig._suptitle.get_text().split()) == LONG_TITLE  # wrapped, not cut
    plt.close(fig)


def test_the_failure_mode_legend_sits_beside_the_bars():
    rows = [
        {"variant": v, "benchmark": "world", "bucket": b, "mode": m, "share": s, "samples": 1}
        for v in ("baseline", "scale_0")
        for b in ("level 1", "level 2", "level 3")
        for m, s in zip(figures.MODE_COLORS, (0.8, 0.05, 0.05, 0.05, 0.05), strict=True)
    ]
    fig = figures.draw_failure_modes(pd.DataFrame(rows), title=LONG_TITLE)
    assert figures.layout_problems(fig) == []
    plt.close(fig)


def test_a_status_has_one_colour_in_every_panel_and_every_run():
    one = report_figures.set_colors(["easy", "hard"])
    other = report_figures.set_colors(["hard", "easy", "chains"])  # another run, another order
    assert one["only hard"] == other["only hard"] and one["only easy"] == other["only easy"]
    assert one["shared"] == other["shared"] and one["several"] == other["several"]
    assert len(set(other.values())) == len(other)  # distinct within a run


def test_every_saved_figure_passes_the_layout_check(tmp_path, caplog):
    heads = pd.DataFrame(
        [{"head": f"L{l}H{h}", "layer": l, "index": h} for l in range(4) for h in range(4)]
    )  # fmt: skip
    status = pd.DataFrame({"head": ["L0H0", "L1H2", "L3H3"],
                           "status": ["shared", "only hard", "only easy"]})  # fmt: skip
    ledger = pd.DataFrame(
        [{"head": f"L{l}H{h}", "layer": l, "index": h, "step": s, "in_circuit": (l + h + s) % 3 == 0,
          "emergent": s > 8 and l == 0, "activated": False, "pruned": False}
         for l in range(4) for h in range(4) for s in (4, 8, 12)]
    )  # fmt: skip
    shares = heads.assign(share=range(16), in_circuit=[i % 5 == 0 for i in range(16)])
    with caplog.at_level(logging.WARNING, logger="sparks.log.run_figures"):
        report_figures.set_map(heads, status, tmp_path / "sets.png", title=LONG_TITLE[:60],
                               set_names=["easy", "hard"])  # fmt: skip
        figures.trajectory(
            ledger, {"mean reward": pd.Series([0.1, 0.2, 0.3], index=[4, 8, 12])},
            tmp_path / "trajectory.png", title="sft: heads in the circuit at each save",
        )  # fmt: skip
        figures.heatmap(
            shares,
            tmp_path / "heatmap.png",
            title="sparks-demo: step 80 (easy pairs), 13 circuit heads",
        )
        figures.tradeoff(_by_bucket(["world"]), {"baseline": 1.0, "scale_0": 0.0},
                         tmp_path / "tradeoff.png", title=LONG_TITLE)  # fmt: skip
    assert not [r.getMessage() for r in caplog.records], caplog.text
    assert all((tmp_path / f).stat().st_size > 5_000
               for f in ("sets.png", "trajectory.png", "heatmap.png", "tradeoff.png"))  # fmt: skip

"""Figures a person would rather look at than read: head heatmaps and head trajectories.

Every figure is saved by `save`, which checks its layout with matplotlib's own extents
(`layout_problems`): titles and legends inside the canvas, no legend over drawn data.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

# states of a head at one save, drawn in this order of precedence
STATES = ("absent", "in circuit", "emergent", "activated", "pruned")
COLORS = ("#f4f4f4", "#9ecae1", "#3182bd", "#31a354", "#de2d26")


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on servers and workers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def layout_problems(fig) -> list[str]:
    """What a reader would miss in `fig`: a title or legend that leaves the canvas, a legend
    drawn over bars or line points. Empty when the figure reads at a glance."""
    fig.draw_without_rendering()  # lays the figure out; `save` rasterises it once, after
    renderer = fig.canvas.get_renderer()
    canvas = fig.bbox

    def outside(bb) -> bool:
        return bb.x0 < canvas.x0 - 1 or bb.x1 > canvas.x1 + 1 or bb.y0 < -1 or bb.y1 > canvas.y1 + 1

    problems = []
    titles = [("the figure's title", fig._suptitle)]
    titles += [(f"panel {i}'s title", ax.title) for i, ax in enumerate(fig.axes)]
    for name, text in titles:
        if text is not None and text.get_text() and outside(text.get_window_extent(renderer)):
            problems.append(f"{name} leaves the canvas")
    for legend in [ax.get_legend() for ax in fig.axes] + list(fig.legends):
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        if outside(box):
            problems.append("a legend leaves the canvas")
        for name, text in titles:
            if (
                text is not None
                and text.get_text()
                and text.get_window_extent(renderer).overlaps(box)
            ):
                problems.append(f"a legend covers {name}")
        for other in fig.axes:
            if _covers_data(other, box, renderer):
                problems.append(f"a legend covers data in panel {fig.axes.index(other)}")
    return problems


def _covers_data(ax, box, renderer) -> bool:
    """Whether `box` (display pixels) lies over a bar of `ax` or a point of its lines."""
    for patch in ax.patches:
        bb = patch.get_window_extent(renderer)
        if bb.width > 0.5 and bb.height > 0.5 and bb.overlaps(box):
            return True
    for line in ax.lines:
        xy = line.get_xydata()
        if len(xy) and line.get_visible():
            pts = ax.transData.transform(np.asarray(xy, dtype=float))
            inside = (
                (pts[:, 0] >= box.x0) & (pts[:, 0] <= box.x1)
                & (pts[:, 1] >= box.y0) & (pts[:, 1] <= box.y1)
            )  # fmt: skip
            if inside.any():
                return True
    return False


def wrapped(text: str, inches: float, *, fontsize: float = 9) -> str:
    """`text` wrapped to lines that fit `inches` at `fontsize` (a character is ~0.6 em wide)."""
    return textwrap.fill(text, max(12, int(inches * 72 / (0.6 * fontsize))))


def fit_title(fig, title: str, *, fontsize: float = 9) -> None:
    """The figure's title, wrapped to the figure's width (long head lists and model paths)."""
    fig.suptitle(wrapped(title, fig.get_figwidth(), fontsize=fontsize), fontsize=fontsize)


def save(fig, out: Path) -> Path:
    """Save `fig` to `out` at 110 dpi and close it; a layout problem is logged, not fatal."""
    problems = layout_problems(fig)
    if problems:
        log.warning("figure %s: %s", Path(out).name, "; ".join(problems))
    fig.savefig(out, dpi=110)
    pyplot().close(fig)
    return out


def heatmap(table: pd.DataFrame, out: Path, *, title: str) -> Path:
    """Layer x head heatmap of each head's share of attribution; circuit heads outlined."""
    plt = pyplot()
    grid = table.pivot(index="layer", columns="index", values="share")
    members = table.pivot(index="layer", columns="index", values="in_circuit")
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * grid.shape[1], 1.0 + 0.4 * grid.shape[0]))
    im = ax.imshow(grid.to_numpy(), cmap="viridis", aspect="auto")
    for (i, j), inside in pd.DataFrame(members.to_numpy()).stack().items():
        if inside:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="white", lw=2))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(grid.shape[0]))
    ax.set_title(
        wrapped(title, fig.get_figwidth() * 0.75), fontsize=9
    )  # the colorbar takes the rest
    fig.colorbar(im, ax=ax, label="share of |attribution| (outlined: in circuit)")
    fig.tight_layout()
    return save(fig, out)


def _state(row) -> int:
    if row.pruned:
        return 4
    if row.activated:
        return 3
    if row.emergent:
        return 2
    return 1 if row.in_circuit else 0


def trajectory(
    ledger: pd.DataFrame, curves: dict[str, pd.Series], out: Path, *, title: str
) -> Path:
    """Heads x saves coloured by state, with training curves (e.g. reward, loss) beneath on the
    same step axis. `curves` maps a label to a Series indexed by step."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = pyplot()
    ever = ledger.groupby("head", sort=False).agg(
        any_=("in_circuit", "any"), layer=("layer", "first"), index=("index", "first")
    )
    heads = ever[ever.any_].sort_values(["layer", "index"]).index.tolist() or ever.index.tolist()
    steps = sorted(ledger.step.unique())
    states = ledger.assign(state=ledger.apply(_state, axis=1)).pivot(
        index="head", columns="step", values="state"
    )
    grid = states.loc[heads, steps].to_numpy()
    n_curves = max(1, len(curves))
    fig, axes = plt.subplots(
        1 + n_curves,
        1,
        sharex=True,
        figsize=(9, 2.0 + 0.22 * len(heads) + 1.6 * n_curves),
        gridspec_kw={"height_ratios": [max(2, 0.22 * len(heads))] + [1.4] * n_curves},
    )
    ax = axes[0]
    edges = [*steps, steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)]
    ax.pcolormesh(
        edges,
        range(len(heads) + 1),
        grid,
        cmap=ListedColormap(COLORS),
        vmin=0,
        vmax=4,
        edgecolors="white",
        linewidth=0.5,
    )
    ax.set_yticks([i + 0.5 for i in range(len(heads))], heads, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(wrapped(title, fig.get_figwidth() * 0.8, fontsize=10), fontsize=10)
    ax.legend(
        handles=[Patch(color=c, label=s) for s, c in zip(STATES, COLORS, strict=True)],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        frameon=False,
    )
    for cax, (label, series) in zip(axes[1:], curves.items(), strict=False):
        cax.plot(series.index, series.to_numpy(), lw=1.2)
        cax.set_ylabel(label, fontsize=8)
        cax.grid(alpha=0.3)
    if not curves:
        axes[1].text(
            0.5,
            0.5,
            "no training curves yet",
            ha="center",
            va="center",
            transform=axes[1].transAxes,
        )
    axes[-1].set_xlabel("training step")
    fig.tight_layout()
    return save(fig, out)


def tradeoff(
    by_bucket: pd.DataFrame, scales: dict[str, float], out: Path, *, title: str,
    controls: pd.DataFrame | None = None,
) -> Path:  # fmt: skip
    """Save `draw_tradeoff`'s figure to `out`."""
    return save(draw_tradeoff(by_bucket, scales, title=title, controls=controls), out)


def draw_tradeoff(
    by_bucket: pd.DataFrame, scales: dict[str, float], *, title: str,
    controls: pd.DataFrame | None = None,
):  # fmt: skip
    """pass@1 by difficulty bucket against the heads' scale (the baseline at 1), one line per
    bucket, one panel per benchmark, with the bootstrap intervals as bands; `controls` (benchmark,
    bucket, scale, pass@1: the random-head draws' mean) as crosses in the bucket's colour. Each
    panel's legend sits beside it, never over a line."""
    plt = pyplot()
    table = by_bucket[by_bucket["variant"].isin(scales)]
    table = table.assign(scale=table["variant"].map(scales)).sort_values("scale")
    benches = sorted(table["benchmark"].unique())
    fig, axes = plt.subplots(
        1, len(benches), figsize=(5.6 * len(benches), 3.6), squeeze=False, layout="constrained"
    )
    for ax, bench in zip(axes[0], benches, strict=True):
        for bucket, g in table[table.benchmark == bench].groupby("bucket", sort=True):
            (line,) = ax.plot(
                g["scale"], g["pass@1"], marker="o", label=f"{bucket} ({g.problems.iloc[0]})"
            )
            ax.fill_between(g["scale"], g["ci_low"], g["ci_high"], alpha=0.15)
            if controls is not None:
                c = controls[(controls.benchmark == bench) & (controls.bucket == bucket)]
                ax.plot(
                    c["scale"], c["pass@1"], ls="none", marker="x", ms=8, color=line.get_color()
                )
        if controls is not None and len(controls):
            ax.plot([], [], ls="none", marker="x", color="#555", label="random heads (mean)")
        ax.axvline(1.0, color="#888", lw=0.8, ls="--")
        ax.set_xlabel("scale of the heads (1 = as trained)")
        ax.set_ylabel("pass@1 (95% CI)")
        top = table[table.benchmark == bench]["ci_high"].max()
        ax.set_ylim(0, min(1.0, max(0.05, 1.15 * top)))  # a model near 0 still shows its lines
        ax.set_title(bench, fontsize=9)
        ax.legend(
            fontsize=7, title="difficulty (problems)", title_fontsize=7,
            loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False,
        )  # fmt: skip
    fit_title(fig, title)
    return fig


MODE_COLORS = {"correct": "#2e7d32", "loop": "#6a1b9a", "no_answer": "#9e9e9e",
               "arithmetic": "#c62828", "wrong_answer": "#ef6c00"}  # fmt: skip


def failure_modes(modes: pd.DataFrame, out: Path, *, title: str) -> Path:
    """Save `draw_failure_modes`'s figure to `out`."""
    return save(draw_failure_modes(modes, title=title), out)


def draw_failure_modes(modes: pd.DataFrame, *, title: str):
    """Share of samples in each failure mode, stacked, per variant x bucket (one panel per
    benchmark); one legend for the figure, beside the panels."""
    from matplotlib.patches import Patch

    plt = pyplot()
    benches = sorted(modes["benchmark"].unique())
    fig, axes = plt.subplots(
        1, len(benches), figsize=(4.6 * len(benches) + 1.6, 3.8), squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, bench in zip(axes[0], benches, strict=True):
        t = modes[modes.benchmark == bench]
        grid = t.pivot_table(
            index=["bucket", "variant"], columns="mode", values="share", sort=True
        ).reindex(columns=list(MODE_COLORS), fill_value=0.0)
        grid.plot.bar(
            stacked=True, ax=ax, color=list(MODE_COLORS.values()), width=0.8, rot=60, legend=False
        )
        ax.set_xticks(range(len(grid)), [f"{b} / {v}" for b, v in grid.index], fontsize=7)
        ax.set_xlabel("")
        ax.set_ylabel("share of samples")
        ax.set_ylim(0, 1)
        ax.set_title(bench, fontsize=9)
    fig.legend(
        handles=[Patch(color=c, label=m) for m, c in MODE_COLORS.items()],
        loc="outside right center", fontsize=7, frameon=False,
    )  # fmt: skip
    fit_title(fig, title)
    return fig

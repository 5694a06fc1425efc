"""The report's figures (matplotlib, written as PNG): one function per question the report answers."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from sparks.log.run_figures import fit_title, pyplot, save, wrapped


def _grid(table: pd.DataFrame, value: str) -> np.ndarray:
    return table.pivot(index="layer", columns="index", values=value).sort_index().to_numpy(float)


def _panels(n: int, grid_shape: tuple[int, int], *, per_row: int = 3):
    plt = pyplot()
    rows, cols = (n + per_row - 1) // per_row, min(n, per_row)
    h, w = grid_shape
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(1.5 + cols * (1.0 + 0.32 * w), 1.2 + rows * (0.9 + 0.3 * h)),
        squeeze=False,
        constrained_layout=True,
    )
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return plt, fig, list(axes.flat[:n])


def _label(ax, title: str, shape: tuple[int, int]) -> None:
    inches = ax.get_position().width * ax.get_figure().get_figwidth()
    ax.set_title(wrapped(title, inches * 1.2), fontsize=9)
    ax.set_xlabel("head", fontsize=8)
    ax.set_ylabel("layer", fontsize=8)
    ax.set_xticks(range(shape[1]))
    ax.set_yticks(range(shape[0]))
    ax.tick_params(labelsize=7)


def layer_head_panels(
    tables: dict[str, pd.DataFrame],
    value: str,
    out: Path,
    *,
    cmap: str,
    vmin: float,
    vmax: float,
    label: str,
) -> Path:
    """One layer x head heatmap of column `value` per table, side by side, on one colour scale."""
    shape = _grid(next(iter(tables.values())), value).shape
    plt, fig, axes = _panels(len(tables), shape)
    im = None
    for ax, (title, t) in zip(axes, tables.items(), strict=True):
        im = ax.imshow(_grid(t, value), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        _label(ax, title, shape)
    fig.colorbar(im, ax=axes, label=label, shrink=0.8)
    return save(fig, out)


def frequency_panels(freqs: list[pd.DataFrame], out: Path) -> Path:
    """Layer x head share of saves in the circuit, one panel per series, one colour scale (0-1)."""
    tables = {f"{f.series.iloc[0]} ({int(f.saves.iloc[0])} saves)": f for f in freqs}
    return layer_head_panels(
        tables,
        "frequency",
        out,
        cmap="magma",
        vmin=0,
        vmax=1,
        label="share of saves in the circuit",
    )


def e_score_panels(scores: dict[str, pd.DataFrame], out: Path) -> Path:
    """Layer x head E score (red: gained share, blue: lost), one panel per comparison, -1..1."""
    label = "E = (I_post - I_pre) / (I_post + I_pre + eps)"
    return layer_head_panels(scores, "E", out, cmap="RdBu_r", vmin=-1, vmax=1, label=label)


def cohort_curves(table: pd.DataFrame, out: Path) -> Path:
    """Per series, one line per cohort: how many of its heads are still in at each later save."""
    plt = pyplot()
    names = list(dict.fromkeys(table.series))
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.2 * len(names), 3.2), squeeze=False, constrained_layout=True
    )
    for ax, name in zip(axes[0], names, strict=True):
        t = table[table.series == name]
        for c, g in t.groupby("cohort"):
            ax.plot(
                g.step,
                g.still_in,
                marker="o",
                ms=3,
                lw=1.2,
                label=f"step {c} ({g['size'].iloc[0]})",
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("save (training step)", fontsize=8)
        ax.set_ylabel("heads of the cohort still in", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(title="entered at", fontsize=6, title_fontsize=7, frameon=False)
    return save(fig, out)


def dynamics_plot(table: pd.DataFrame, out: Path) -> Path:
    """Per series: heads activated (up) and pruned (down) per save, circuit size, and the reward."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    plt = pyplot()
    names = list(dict.fromkeys(table.series))
    fig, axes = plt.subplots(
        1, len(names), figsize=(4.6 * len(names) + 1.4, 3.4), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], names, strict=True):
        t = table[table.series == name]
        width = max(0.4, 0.35 * float(np.median(np.diff(t.step))) if len(t) > 1 else 0.8)
        ax.bar(t.step, t.activated, width=width, color="#31a354", label="activated")
        ax.bar(t.step, -t.pruned, width=width, color="#de2d26", label="pruned")
        ax.plot(t.step, t.heads, color="#3182bd", marker="o", ms=3, label="circuit size")
        ax.axhline(0, color="black", lw=0.5)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("save (training step)", fontsize=8)
        ax.set_ylabel("heads", fontsize=8)
        if t.reward.notna().any():
            rx = ax.twinx()
            rx.plot(t.step, t.reward, color="black", ls="--", marker="s", ms=3, label="mean reward")
            rx.set_ylabel("mean reward", fontsize=8)
    # one legend for every panel, beside them: inside, it covered the bars and the size line
    handles = [
        Patch(color="#31a354", label="activated"),
        Patch(color="#de2d26", label="pruned"),
        Line2D([], [], color="#3182bd", marker="o", ms=3, label="circuit size"),
        Line2D([], [], color="black", ls="--", marker="s", ms=3, label="mean reward"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=7, frameon=False)
    return save(fig, out)


def retention_bars(table: pd.DataFrame, out: Path) -> Path:
    """Retention and churn per save, series side by side."""
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2), constrained_layout=True)
    colors = ["#3182bd" if m in ("sft", "distill") else "#e6550d" for m in table.method]
    a.bar(table.series, table.retention, color=colors)
    a.set_ylim(0, 1)
    a.set_ylabel("retention (share of entered heads still in at the end)", fontsize=7)
    b.bar(table.series, table.churn_per_save, color=colors)
    b.set_ylabel("churn: heads activated + pruned per save", fontsize=7)
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=7, rotation=20)
        ax.grid(axis="y", alpha=0.3)
    return save(fig, out)


def think_map(on: pd.DataFrame, off: pd.DataFrame, out: Path) -> Path:
    """Layer x head: shared, on-only and off-only (compensatory) circuit heads."""
    code = (
        on.set_index("head")["in_circuit"].astype(int)
        + 2 * off.set_index("head")["in_circuit"].astype(int).reindex(on["head"]).to_numpy()
    )
    t = on.assign(code=code.to_numpy())
    colors = ["#f4f4f4", "#3182bd", "#e6550d", "#756bb1"]
    labels = ["neither", "thinking on only", "thinking off only (compensatory)", "both"]
    return _category_map(
        _grid(t, "code"), colors, labels, out, title="circuit heads with thinking on and off"
    )


def _category_map(grid, colors: list[str], labels: list[str], out: Path, *, title: str) -> Path:
    """Layer x head grid of category codes 0..len(labels)-1, one colour each, legend beside."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.5 + 0.4 * grid.shape[1], 1.2 + 0.35 * grid.shape[0]))
    ax.imshow(grid, cmap=ListedColormap(colors), vmin=0, vmax=len(labels) - 1, aspect="auto")
    _label(ax, "", grid.shape)
    fit_title(fig, title)  # over the map and its legend: a small map would cut it
    ax.legend(
        handles=[Patch(color=c, label=s) for c, s in zip(colors, labels, strict=True)],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=7,
        frameon=False,
    )
    fig.tight_layout()
    return save(fig, out)


def pass_at_1_bars(table: pd.DataFrame, out: Path) -> Path:
    """pass@1 with its 95% interval, variants (e.g. thinking on/off) side by side per benchmark."""
    pyplot()  # the Agg backend, before pandas draws
    piv = table.pivot(index="benchmark", columns="variant", values="pass@1")
    lo = table.pivot(index="benchmark", columns="variant", values="pass@1_ci_low")
    hi = table.pivot(index="benchmark", columns="variant", values="pass@1_ci_high")
    err = np.stack([(piv - lo).T.to_numpy(), (hi - piv).T.to_numpy()], axis=1)
    ax = piv.plot.bar(yerr=err, capsize=3, figsize=(5, 3.2), rot=0)
    ax.set_ylabel("pass@1 (95% CI)")
    ax.set_ylim(0, 1)
    ax.figure.tight_layout()
    return save(ax.figure, out)


STATUS_COLORS = {"in no circuit": "#f4f4f4", "shared": "#756bb1", "several": "#fdae6b"}
ONLY_COLORS = ("#3182bd", "#e6550d", "#31a354", "#de2d26", "#8c564b", "#e377c2", "#17becf",
               "#bcbd22")  # fmt: skip


def set_colors(set_names: list[str]) -> dict[str, str]:
    """One colour per status, fixed by name: the same status has the same colour in every panel
    of a report and in every run (a set's colour comes from its name's hash; sets whose hashes
    collide take the next free colour, in name order)."""
    colors, taken = dict(STATUS_COLORS), set[str]()
    for name in sorted(set(set_names)):
        i = zlib.crc32(name.encode()) % len(ONLY_COLORS)
        while ONLY_COLORS[i] in taken and len(taken) < len(ONLY_COLORS):
            i = (i + 1) % len(ONLY_COLORS)
        taken.add(ONLY_COLORS[i])
        colors[f"only {name}"] = ONLY_COLORS[i]
    return colors


def set_map(
    heads_at: pd.DataFrame, table: pd.DataFrame, out: Path, *, title: str,
    set_names: list[str] | None = None,
) -> Path:  # fmt: skip
    """Layer x head at a series' last save: heads in every pair set's circuit (shared), in one
    set's only, in several; `heads_at` lists every head (layer, index), `table` their status.
    `set_names`: every pair set of the report, so that all its maps share one legend."""
    present = [s.removeprefix("only ") for s in table["status"] if s.startswith("only ")]
    colors = set_colors([*(set_names or []), *present])
    labels = list(colors)
    code = heads_at["head"].map(dict(zip(table["head"], table["status"], strict=True)))
    t = heads_at.assign(code=code.map({s: i for i, s in enumerate(labels)}).fillna(0))
    return _category_map(_grid(t, "code"), list(colors.values()), labels, out, title=title)

"""What a comparison compares: series of saves with a common base, read from disk or MLflow.

A `Series` is one training stage of a run, or a set of checkpoints: the head tables of its saves in
step order (ledger columns), the save it started from, the rewards logged while it trained, its
evaluations, and the model it ended with. Sources:

1. a run directory (`ledger.parquet`, `run.json`): each stage is a series; stage i's saves are the
   steps in (offset_i, offset_i + max_steps], and it starts from the last save before them;
2. checkpoint or snapshot directories (`circuit/snapshot.json` inside, or `snapshot.json`):
   consecutive ones under one folder form one series, in checkpoint-N order, starting from the base;
3. `mlflow:RUN_ID`: a run logged by sparks, read back from its tracking server (ledger.json,
   params, reward and evaluation metrics).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sparks.circuits.snapshot import read_snapshot
from sparks.evaluate.runner import evaluated, read_eval_metrics
from sparks.track.ledger import build_ledger, head_table, primary
from sparks.train.saves import checkpoints, evaluation_files, saves, stage_dir

MLFLOW_PREFIX = "mlflow:"


class CompareError(ValueError):
    """A comparison that cannot be made; the message names the input and the fix."""


@dataclass(frozen=True)
class Series:
    name: str
    method: str  # sft | distill | grpo | checkpoints
    ledger: pd.DataFrame  # ledger rows of `start` and every save, in step order
    start: int  # the step it started from: its first row
    rewards: pd.Series = field(default_factory=lambda: pd.Series(dtype=float))  # by step
    evals: dict[int, dict] = field(default_factory=dict)  # step -> {benchmark: metrics}
    model: str | None = None  # the model it ended with (what an ablation edits)
    mlflow_run: str | None = None
    mlflow_uri: str | None = None
    source: str = ""
    sets: pd.DataFrame | None = None  # every pair set's ledger rows (a run with several sets)

    @property
    def saves(self) -> list[int]:
        """Steps of the saves after the start whose snapshot could be built."""
        ok = self.ledger[~self.ledger.failed & (self.ledger.step > self.start)]
        return sorted(ok.step.unique().tolist())

    def at(self, step: int) -> pd.DataFrame:
        return self.ledger[self.ledger.step == step]


@dataclass(frozen=True)
class Sources:
    base: pd.DataFrame  # the common base's head table
    base_name: str
    series: list[Series]


def load_sources(paths: list[str], *, base: str | None = None) -> Sources:
    """Read every source; refuse sources without a common base (give `base` to set one)."""
    series: list[Series] = []
    bases: list[tuple[str, pd.DataFrame]] = []
    base_table = _snapshot_table(base, step=0) if base else None
    groups = _group(paths)
    for kind, items in groups:
        if kind == "run":
            got, run_base = _run_dir(Path(items[0]))
            series += got
            bases.append((items[0], run_base))
        elif kind == "mlflow":
            got, run_base = _mlflow_run(items[0].removeprefix(MLFLOW_PREFIX))
            series += got
            bases.append((items[0], run_base))
        else:
            if base_table is None:
                raise CompareError(
                    f"{items[0]} is a checkpoint: checkpoints need a common base to compare "
                    "against: pass --base (a base checkpoint with circuit/, or a snapshot directory)"
                )
            series.append(_checkpoint_set(items, base_table))
    if base_table is None:
        if not bases:
            raise CompareError("nothing to compare: pass run or checkpoint directories")
        first_name, base_table = bases[0]
        for name, other in bases[1:]:
            if not _same_circuit(base_table, other):
                raise CompareError(
                    f"{name} and {first_name} start from different base snapshots (other model "
                    "or pairs): compare runs of one base, or pass --base to set the reference"
                )
        base_name = f"base ({first_name})"
    else:
        base_name = f"base ({base})"
    names = [s.name for s in series]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise CompareError(f"two series are both named {dup!r}: give each run another name")
    return Sources(base_table.assign(step=0), base_name, series)


def _group(paths: list[str]) -> list[tuple[str, list[str]]]:
    """(kind, paths): a run dir or an MLflow run alone, consecutive checkpoints of one folder together."""
    groups: list[tuple[str, list[str]]] = []
    for p in paths:
        if p.startswith(MLFLOW_PREFIX):
            groups.append(("mlflow", [p]))
            continue
        path = Path(p)
        if not path.exists():
            raise CompareError(
                f"{p} does not exist: pass a run directory, a checkpoint or mlflow:RUN_ID"
            )
        if (path / "ledger.parquet").is_file():
            groups.append(("run", [p]))
        elif (path / "circuit" / "snapshot.json").is_file() or (path / "snapshot.json").is_file():
            parent = str(path.resolve().parent)
            if groups and groups[-1][0] == "checkpoints" and groups[-1][1][0] == parent:
                groups[-1][1].append(p)
            else:
                groups.append(("checkpoints", [parent, p]))
        else:
            raise CompareError(
                f"{p} is neither a sparks run (no ledger.parquet) nor a snapshotted checkpoint (no "
                f"circuit/snapshot.json): snapshot it first with `sparks snapshot {p} ...`"
            )
    return [(k, items[1:] if k == "checkpoints" else items) for k, items in groups]


def _snapshot_table(path: str | Path, *, step: int) -> pd.DataFrame:
    path = Path(path)
    snap_dir = path / "circuit" if (path / "circuit" / "snapshot.json").is_file() else path
    if not (snap_dir / "snapshot.json").is_file():
        raise CompareError(
            f"{path} has no circuit snapshot (circuit/snapshot.json): snapshot it first with "
            f"`sparks snapshot {path} --pairs PAIRS --out {path}/circuit`"
        )
    return head_table(read_snapshot(snap_dir)).assign(step=step)


def _same_circuit(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    return (
        len(a) == len(b)
        and a["head"].tolist() == b["head"].tolist()
        and a["in_circuit"].tolist() == b["in_circuit"].tolist()
        and bool(((a["score"] - b["score"]).abs() <= 1e-9 + 1e-6 * b["score"].abs()).all())
    )


def _checkpoint_set(paths: list[str], base: pd.DataFrame) -> Series:
    def number(p: str) -> int | None:
        m = re.fullmatch(r"checkpoint-(\d+)", Path(p).name)
        return int(m.group(1)) if m else None

    found = [number(p) for p in paths]
    steps = [s for s in found if s is not None]
    if len(steps) != len(paths) or len(set(steps)) != len(steps):
        steps = list(range(1, len(paths) + 1))  # no checkpoint-N names: argument order
    order = sorted(zip(steps, paths, strict=True))
    tables = [_snapshot_table(p, step=s) for s, p in order]
    ledger = build_ledger([base.assign(step=0), *tables])
    last = Path(order[-1][1])
    name = last.name if len(order) == 1 else Path(order[0][1]).resolve().parent.name
    evals = {
        s: read_eval_metrics(Path(p) / "eval") for s, p in order if evaluated(Path(p) / "eval")
    }
    model = str(last) if (last / "config.json").is_file() else None
    return Series(name, "checkpoints", ledger, 0, evals=evals, model=model, source=str(last))


def _stage_windows(config: dict) -> list[tuple[int, str, int, int]]:
    """(index, method, first step exclusive, last step inclusive) of each stage."""
    out, offset = [], 0
    for i, st in enumerate(config["stages"]):
        out.append((i, st["method"], offset, offset + int(st["max_steps"])))
        offset += int(st["max_steps"])
    return out


def _split(
    name: str, config: dict, ledger: pd.DataFrame
) -> list[tuple[int, str, int, pd.DataFrame]]:
    """Each stage's rows: the save it started from and its own saves."""
    windows = _stage_windows(config)
    methods = [m for _, m, _, _ in windows]
    out = []
    ok_steps = sorted(ledger.loc[~ledger.failed, "step"].unique())
    for i, method, lo, hi in windows:
        starts = [s for s in ok_steps if s <= lo]
        if not starts:
            continue
        own = ledger[(ledger.step > lo) & (ledger.step <= hi)]
        if own.empty:
            continue  # a stage not trained yet
        start = int(starts[-1])
        label = f"{name}.{method}" if methods.count(method) == 1 else f"{name}.stage{i}-{method}"
        rows = pd.concat([ledger[ledger.step == start], own]).reset_index(drop=True)
        out.append((i, label, start, rows))
    return out


def _run_dir(out: Path) -> tuple[list[Series], pd.DataFrame]:
    meta_file = out / "run.json"
    if not meta_file.is_file():
        raise CompareError(f"{out} has a ledger but no run.json: it was not written by sparks")
    meta = json.loads(meta_file.read_text())
    cfg = meta["config"]
    every = pd.read_parquet(out / "ledger.parquet")
    ledger = primary(every)  # the run's primary circuit; the other pair sets ride along
    if "edge_share" not in ledger:  # ledgers from before edge_share: the node share stands in
        ledger["edge_share"] = ledger["share"]
    if 0 not in set(ledger.step):
        raise CompareError(f"{out}: the ledger has no base snapshot (step 0): rerun the run")
    mlflow = (
        json.loads((out / "mlflow_run.json").read_text())
        if (out / "mlflow_run.json").is_file()
        else {}
    )
    stages = [(st["method"], int(st["max_steps"])) for st in cfg["stages"]]
    evals = {step: json.loads(p.read_text()) for step, p in evaluation_files(out, stages).items()}
    series = []
    for i, label, start, rows in _split(cfg["name"], cfg, ledger):
        sdir = stage_dir(out, i, cfg["stages"][i]["method"])
        offset, hi = _stage_windows(cfg)[i][2:]
        ckpts, weighted = saves(sdir), checkpoints(sdir)  # retention may have removed weights
        final = sdir / "final"
        model = str(final) if final.is_dir() else (str(weighted[-1]) if weighted else None)
        series.append(
            Series(
                label,
                cfg["stages"][i]["method"],
                rows,
                start,
                rewards=_rewards(ckpts, offset),
                evals={step: m for step, m in evals.items() if start <= step <= hi},
                model=model,
                mlflow_run=mlflow.get("run_id"),
                mlflow_uri=mlflow.get("uri"),
                source=str(out),
                sets=every[(every.step >= start) & (every.step <= hi)]
                if "set" in every and every["set"].nunique() > 1
                else None,
            )
        )
    return series, ledger[ledger.step == 0].reset_index(drop=True)


def _rewards(ckpts: list[Path], offset: int) -> pd.Series:
    """Mean reward at each training step, from the last checkpoint's trainer_state.json."""
    for c in reversed(ckpts):
        state = c / "trainer_state.json"
        if state.is_file():
            hist = json.loads(state.read_text()).get("log_history", [])
            points = {offset + int(h["step"]): float(h["reward"]) for h in hist if "reward" in h}
            return pd.Series(points, dtype=float).sort_index()
    return pd.Series(dtype=float)


def _mlflow_run(run_id: str) -> tuple[list[Series], pd.DataFrame]:
    """A sparks run read back from MLflow (MLFLOW_TRACKING_URI, else the project's store)."""
    import os
    import tempfile

    from mlflow.tracking import MlflowClient

    from sparks.log.tracking import default_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    client = MlflowClient(tracking_uri=uri)
    try:
        run = client.get_run(run_id)
    except Exception as e:
        raise CompareError(
            f"mlflow:{run_id}: no such run at {uri} ({type(e).__name__}); set MLFLOW_TRACKING_URI "
            "to the server that holds it"
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, "ledger.json", tmp)
        except Exception:
            raise CompareError(
                f"mlflow:{run_id}: the run has no ledger.json artifact (not a finished sparks "
                "training run): compare its run directory instead"
            ) from None
        table = json.loads(Path(local).read_text())
    ledger = pd.DataFrame(table["data"], columns=table["columns"])
    for col in ("in_circuit", "failed", "emergent", "activated", "pruned"):
        ledger[col] = ledger[col].astype(bool)
    if "edge_share" not in ledger:
        ledger["edge_share"] = ledger["share"]
    params = run.data.params
    stages: list[dict[str, Any]] = []
    i = 0
    while f"stages.{i}.method" in params:
        stages.append(
            {
                "method": params[f"stages.{i}.method"],
                "max_steps": int(params[f"stages.{i}.max_steps"]),
            }
        )
        i += 1
    cfg: dict[str, Any] = {"name": run.info.run_name, "stages": stages}
    rewards = pd.Series(
        {m.step: m.value for m in client.get_metric_history(run_id, "reward")}, dtype=float
    ).sort_index()
    evals: dict[int, dict] = {}
    for key in run.data.metrics:
        m = re.fullmatch(r"eval/([^/]+)/(pass_at_1|pass_at_1_ci_low|pass_at_1_ci_high)", key)
        if m:
            for point in client.get_metric_history(run_id, key):
                evals.setdefault(point.step, {}).setdefault(m.group(1), {})[
                    m.group(2).replace("_at_", "@")
                ] = point.value
    series = []
    for _i, label, start, rows in _split(cfg["name"], cfg, ledger):
        lo, hi = rows.step.min(), rows.step.max()
        series.append(
            Series(
                label,
                stages[_i]["method"],
                rows,
                start,
                rewards=rewards[(rewards.index > lo) & (rewards.index <= hi)],
                evals={s: v for s, v in evals.items() if lo <= s <= hi},
                model=None,
                mlflow_run=run_id,
                mlflow_uri=uri,
                source=f"{MLFLOW_PREFIX}{run_id}",
            )
        )
    return series, ledger[ledger.step == 0].reset_index(drop=True)

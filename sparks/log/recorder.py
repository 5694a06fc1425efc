"""The path a snapshot takes after it is built: ledger row -> MLflow -> figures.

`Recorder` belongs to the main process of a run (the other ranks of a multi-process run have
none). It holds what a run reports as it goes:
1. `on_snapshot`: a save's snapshot (or its failure) becomes ledger rows, MLflow metrics
   (`circuit/*`, `head/L*H*`), a heatmap, and a refreshed trajectory figure.
2. `on_log`: the trainer's metrics, on the run's global step axis (`MetricsToRecorder`).
3. `on_evaluation`: a save's pass@1 and per-problem tables.
4. `finish`: the final ledger, figure and table, and the ledger half of the run's summary.

A rerun of a killed run logs no step twice: what MLflow already has is read back at `resume`.
It lives under `sparks/log/` because it drives the tracker and the figures (the end of the data's
path); the pipeline only tells it what happened.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from sparks.circuits.snapshot import CircuitSnapshot, FailedSnapshot, read_snapshot
from sparks.files import is_write_error, write_failure
from sparks.log.console import say
from sparks.log.run_figures import heatmap, trajectory
from sparks.log.tracking import Tracker
from sparks.track.ledger import head_table, ledger_of_sets, primary, step_summary

CURVE_KEYS = ("reward", "loss")


class Recorder:
    """Ledger, MLflow and figures of one run, fed one snapshot, log line and evaluation at a time."""

    def __init__(self, tracker: Tracker, out: Path, name: str, sets: list[str] | None = None):
        self.tracker, self.out, self.name = tracker, Path(out), name
        self.sets = list(sets or [""])  # pair sets, the primary first ('' when there is one)
        self.tables: dict[str, list[pd.DataFrame]] = {s: [] for s in self.sets}
        self.curves: dict[str, dict[int, float]] = {}
        self.logged_steps: dict[str, set[int]] = {s: set() for s in self.sets}
        self.eval_logged: set[int] = set()
        self.loss_logged: set[int] = set()
        # seconds spent recording snapshots (ledger, MLflow, figures), per pair set: a cost of
        # snapshotting as much as building them is
        self.record_seconds: dict[str, float] = {s: 0.0 for s in self.sets}

    def resume(self, snapshots: list[tuple[str, Path]], *, eval_key: str | None) -> None:
        """Read back what a killed or earlier run already recorded: snapshots on disk, (set, path)
        in step order (ledger), and the steps MLflow has (so nothing is logged twice)."""
        self.tables = {s: [] for s in self.sets}
        for name, p in snapshots:
            self.tables.setdefault(name, []).append(head_table(read_snapshot(p)))
        for name in self.sets:
            # circuit/failed is logged at every save, failed or not
            prefix = "circuit/" if name == self.sets[0] else f"circuit/{name}/"
            keys = [f"{prefix}{k}" for k in ("heads", "failed")]
            self.logged_steps[name] = set().union(*(self.tracker.metric_steps(k) for k in keys))
        self.eval_logged = self.tracker.metric_steps(eval_key) if eval_key else set()
        self.loss_logged = self.tracker.metric_steps("loss")

    # 1. snapshots -----------------------------------------------------------------------------
    def on_snapshot(
        self, step: int, snap: CircuitSnapshot | FailedSnapshot, path: Path, pair_set: str = ""
    ) -> None:
        """Ledger row, MLflow metrics and artifacts, and a refreshed trajectory for one snapshot
        of pair set `pair_set` (the primary's keys are circuit/*, head/L*H*; another set's
        circuit/NAME/*, head/NAME/L*H*); the time it takes is added to `record_seconds`."""
        start = time.perf_counter()
        try:
            self._on_snapshot(step, snap, path, pair_set)
        finally:
            spent = time.perf_counter() - start
            self.record_seconds[pair_set] = self.record_seconds.get(pair_set, 0.0) + spent

    def _on_snapshot(
        self, step: int, snap: CircuitSnapshot | FailedSnapshot, path: Path, pair_set: str
    ) -> None:
        tables = self.tables.setdefault(pair_set, [])
        tables[:] = [t for t in tables if t.step.iloc[0] != step] + [head_table(snap)]
        tables.sort(key=lambda t: t.step.iloc[0])
        ledger = ledger_of_sets(self.tables)
        mine = ledger[ledger["set"] == pair_set]
        row = step_summary(mine).set_index("step").loc[step]
        now = mine[mine.step == step]
        is_primary = pair_set == self.sets[0]
        logged = self.logged_steps.setdefault(pair_set, set())
        label = f" ({pair_set} pairs)" if pair_set else ""
        if isinstance(snap, FailedSnapshot):
            # no circuit to report: the save is marked failed, the run goes on
            say(f"[sparks] snapshot{label} of step {step} failed ({path}): {snap.reason}")
            if step not in logged:
                self.tracker.log_metrics(
                    _keyed({"circuit/failed": 1.0}, pair_set, is_primary), step
                )
                tag = f"sparks.snapshot_failed.{pair_set + '.' if pair_set else ''}step-{step}"
                self.tracker.set_tags({tag: snap.reason[:500]})
                logged.add(step)
            self.write_ledger(ledger)
            return
        metrics: dict[str, float] = {
            f"circuit/{k}": int(row[k]) for k in ("heads", "emergent", "activated", "pruned")
        }
        metrics["circuit/failed"] = 0.0
        metrics["circuit/faithfulness"] = snap.circuit_faithfulness
        metrics["circuit/completeness_error"] = snap.completeness_error
        metrics["circuit/ig_steps"] = snap.settings.get("steps", float("nan"))
        if snap.settings.get("steps_auto"):
            metrics["circuit/ig_capped"] = float(snap.settings["steps_capped"])
        metrics["circuit/seconds"] = snap.seconds
        metrics.update({f"head/{h}": s for h, s in zip(now["head"], now["share"], strict=True)})
        if step not in logged:
            self.tracker.log_metrics(_keyed(metrics, pair_set, is_primary), step)
            logged.add(step)
        say(
            f"[sparks] snapshot{label} step {step}: {int(row.heads)} heads ({int(row.emergent)} emergent, "
            f"+{int(row.activated)} -{int(row.pruned)}), faithfulness "
            f"{metrics['circuit/faithfulness']:.2f}, {snap.seconds:.1f}s" + _auto_note(snap)
        )
        figs = self.out / "figures"
        figs.mkdir(exist_ok=True)
        suffix = f"-{pair_set}" if pair_set else ""
        hm = heatmap(
            now,
            figs / f"heatmap-step{step}{suffix}.png",
            title=f"{self.name}: step {step}{label}, {len(snap.heads)} circuit heads",
        )
        where = f"snapshots/step-{step}" + (f"/{pair_set}" if pair_set else "")
        self.tracker.log_artifact(hm, where)
        self.tracker.log_artifact(path, where)
        self.write_ledger(ledger)
        if is_primary:
            self.tracker.log_artifact(self.trajectory(primary(ledger)), "figures")

    # 2. trainer metrics -----------------------------------------------------------------------
    def on_log(self, metrics: dict[str, float], step: int) -> None:
        """Trainer metrics at the run's global `step`; a resumed run's redone steps go once."""
        if not ("loss" in metrics and step in self.loss_logged):
            self.tracker.log_metrics(metrics, step)
        for k in CURVE_KEYS:
            if k in metrics:
                self.curves.setdefault(k, {})[step] = float(metrics[k])

    def read_curves(self, trainer_state: Path, offset: int) -> None:
        """Loss and reward curves from a checkpoint's trainer_state.json (a stage trained in other
        processes), on the run's step axis."""
        history = json.loads(Path(trainer_state).read_text()).get("log_history", [])
        for entry in history:
            for k in CURVE_KEYS:
                if k in entry and "step" in entry:
                    self.curves.setdefault(k, {})[offset + int(entry["step"])] = float(entry[k])

    def end_of_stage(self, trainer_state: Path, offset: int) -> None:
        """A stage killed after its last save but before the trainer's end-of-training log: its
        train_loss (the mean of the logged step losses: logging_steps is 1) and total_flos, read
        from the last save's trainer_state.json. Its runtime and throughput died with the process
        and are not made up."""
        state = json.loads(Path(trainer_state).read_text())
        step = offset + int(state["global_step"])
        if step in self.tracker.metric_steps("train_loss"):
            return
        losses = [e["loss"] for e in state.get("log_history", []) if "loss" in e]
        metrics = {"total_flos": float(state.get("total_flos", 0.0))}
        if losses:
            metrics["train_loss"] = sum(losses) / len(losses)
        self.tracker.log_metrics(metrics, step)

    # 3. evaluations ---------------------------------------------------------------------------
    def on_evaluation(self, step: int, results: dict) -> None:
        """A save's metrics per benchmark and its per-problem tables, once per step."""
        metrics = {b: r.metrics for b, r in results.items()}
        say(
            f"[sparks] evaluation step {step}: "
            + ", ".join(f"{b} pass@1 {m['pass@1']:.3f}" for b, m in metrics.items())
        )
        if step in self.eval_logged:
            return
        self.tracker.log_metrics(
            {f"eval/{b}/{k}": v for b, m in metrics.items() for k, v in m.items()}, step
        )
        for b, r in results.items():
            self.tracker.log_table(r.table.to_dict(orient="records"), f"eval/step-{step}/{b}.json")
        self.eval_logged.add(step)

    # 4. the end -------------------------------------------------------------------------------
    def trajectory(self, ledger: pd.DataFrame) -> Path:
        curves = {k: pd.Series(v).sort_index() for k, v in self.curves.items() if v}
        return trajectory(
            ledger,
            curves,
            self.out / "figures" / "trajectory.png",
            title=f"{self.name}: attention heads across saves",
        )

    def write_ledger(self, ledger: pd.DataFrame) -> None:
        tmp = self.out / ".ledger.parquet.tmp"
        try:
            ledger.to_parquet(tmp, index=False)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if is_write_error(e):
                raise write_failure(self.out / "ledger.parquet", e) from e
            raise
        tmp.replace(self.out / "ledger.parquet")

    def finish(self) -> dict:
        """Write the final ledger, figure and table; the ledger's part of the run's summary."""
        ledger = ledger_of_sets(self.tables)
        self.write_ledger(ledger)
        main = primary(ledger)
        self.tracker.log_artifact(self.trajectory(main), "figures")
        self.tracker.log_table(ledger.to_dict(orient="records"), "ledger.json")
        last = main[main.step == main.step.max()]
        return {
            "saves": int(ledger.step.nunique()),
            "final_heads": last.loc[last.in_circuit, "head"].tolist(),
            "emergent": last.loc[last.emergent, "head"].tolist(),
        }


def _keyed(metrics: dict, pair_set: str, is_primary: bool) -> dict:
    """The primary set's metrics as they are (circuit/*, head/L*H*: one series each, its name is
    the run's tag sparks.primary_pair_set); another set's under circuit/NAME/*, head/NAME/L*H*."""
    if is_primary or not pair_set:
        return dict(metrics)
    return {k.replace("/", f"/{pair_set}/", 1): v for k, v in metrics.items()}


def _auto_note(snap: CircuitSnapshot) -> str:
    """The IG steps and the completeness error reached (with steps: auto, a capped flag)."""
    s = snap.settings
    capped = f", CAPPED at {s['steps']} (raise snapshot.max_steps)" if s.get("steps_capped") else ""
    return f", {snap.steps_text} (completeness error {snap.completeness_error:.1%}){capped}"


class MetricsToRecorder(TrainerCallback):
    """Trainer logs -> the recorder, on the run's global step axis (main process only)."""

    def __init__(self, recorder: Recorder, offset: int):
        self.recorder, self.offset = recorder, offset

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        metrics = {
            k: v
            for k, v in logs.items()
            if isinstance(v, (int, float)) and k not in ("epoch", "step")
        }
        self.recorder.on_log(metrics, self.offset + state.global_step)

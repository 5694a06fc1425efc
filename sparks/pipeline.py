"""A training-analysis run, step by step: the library behind the `post-train` Prefect flow.

1. prepare: the world (if used), the training problems, the MLflow run; snapshots already on
   disk (a resumed run) are read back into the ledger.
   pairs: the attribution pairs, built once for the model's tokenizer (`sparks.pairs`) into
   output_dir/pairs.jsonl and reused by every snapshot of the run.
2. base snapshot and evaluation (step 0): the reference that makes a head "emergent".
3. each stage (sft / distill / grpo) in order, continuing the step axis; the checkpoint hook
   snapshots every save, and each snapshot updates the ledger, MLflow and the trajectory figure;
   then every `evaluation.every`-th save is evaluated (vLLM by default) and logged at its step.
4. summarise: ledger table, final figure, a summary dict.

Layout of `output_dir`:
    run.json, pairs.jsonl, mlflow_run.json, pending.jsonl (only while MLflow is unreachable)
    base/circuit/                       snapshot of the base model (step 0)
    base/eval/, stage{i}-{method}/checkpoint-N/eval/   per-problem tables and metrics.json
    stage{i}-{method}/checkpoint-N/circuit/   one snapshot per save; final/ is the stage's model
    ledger.parquet, figures/trajectory.png, figures/heatmap-step{N}.png
"""

from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
from transformers import TrainerCallback

from sparks.circuits.attribute import choose_metric
from sparks.circuits.pairs import encode_pairs, load_pairs
from sparks.circuits.snapshot import (
    CircuitSnapshot,
    FailedSnapshot,
    build_or_fail,
    read_snapshot,
    save_snapshot,
)
from sparks.config import WORLD, RunConfig
from sparks.evaluate.evaluate import benchmarks_for, evaluate_model, sampling_for
from sparks.evaluate.generate import generate
from sparks.files import atomic_dir, atomic_write_text, is_write_error, read_jsonl, write_failure
from sparks.grading import is_correct
from sparks.log.figures import heatmap, trajectory
from sparks.log.tracking import Tracker
from sparks.models import load_model, load_tokenizer
from sparks.pairs import pairs_for_run
from sparks.track.hook import CircuitSnapshotCallback, preserved_rng
from sparks.track.ledger import build_ledger, head_table, step_summary
from sparks.train.data import load_problems, prompt_messages
from sparks.train.trainers import build_trainer
from sparks.world.build import world_for

CURVE_KEYS = ("reward", "loss")


class _MetricsToTracker(TrainerCallback):
    """Trainer logs -> MLflow on the run's global step axis, and kept for the trajectory figure."""

    def __init__(self, run: TrainingRun, offset: int):
        self.run, self.offset = run, offset
        # steps a killed run had logged already: resumed training redoes them, MLflow gets them once
        self.logged = run.tracker.metric_steps("loss")

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        step = self.offset + state.global_step
        metrics = {
            k: v
            for k, v in logs.items()
            if isinstance(v, (int, float)) and k not in ("epoch", "step")
        }
        if not ("loss" in logs and step in self.logged):
            self.run.tracker.log_metrics(metrics, step)
        for k in CURVE_KEYS:
            if k in metrics:
                self.run.curves.setdefault(k, {})[step] = float(metrics[k])


@dataclass
class TrainingRun:
    cfg: RunConfig
    out: Path = field(init=False)
    tracker: Tracker = field(init=False)
    tables: list[pd.DataFrame] = field(default_factory=list)
    curves: dict[str, dict[int, float]] = field(default_factory=dict)
    snapshot_seconds: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self):
        self.out = Path(self.cfg.output_dir)
        self.tracker = Tracker(
            self.cfg.tracking.mlflow_uri, self.cfg.tracking.experiment, self.cfg.name, self.out
        )

    # 1. prepare -------------------------------------------------------------------------------
    def prepare(self) -> dict:
        """Build inputs, check them all before training, open the MLflow run."""
        cfg = self.cfg
        pairs = cfg.resolved_pairs()
        uses_world = WORLD in (cfg.model.path, cfg.data.train) or (
            pairs.mode != "file" and WORLD in pairs.sources
        )
        self.world = world_for(cfg.world) if uses_world else None
        self.base_model = str(self.world.model_dir) if cfg.model.path == WORLD else cfg.model.path
        self.records = load_problems(
            cfg.data.train, world=self.world, max_samples=cfg.data.max_samples, data=cfg.data
        )
        self.tokenizer = load_tokenizer(self.base_model)
        self.out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            self.out / "run.json",
            json.dumps(
                {
                    "name": cfg.name,
                    "experiment": cfg.tracking.experiment,
                    "uri": self.tracker.uri,
                    "config": cfg.model_dump(),
                },
                indent=2,
            ),
        )
        self.tracker.start(
            _flatten(cfg.model_dump()),
            {
                "method": "+".join(s.method for s in cfg.stages),
                "base_model": cfg.model.path,
                "sparks.run": cfg.name,
            },
        )
        # a resumed run: earlier saves stay in the ledger
        for _step, path in self._snapshots_on_disk():
            self.tables.append(head_table(read_snapshot(path)))
        # a rerun logs no step twice (circuit/failed is logged at every save, failed or not)
        self.logged_steps = self.tracker.metric_steps("circuit/heads") | self.tracker.metric_steps(
            "circuit/failed"
        )
        ev = self.cfg.evaluation
        self.eval_logged = (
            self.tracker.metric_steps(f"eval/{ev.benchmarks[0]}/pass@1") if ev.benchmarks else set()
        )
        return {"problems": len(self.records), "base_model": self.base_model}

    def build_pairs(self) -> dict:
        """The run's pairs (built once into output_dir/pairs.jsonl), encoded for every snapshot."""
        s = self.cfg.snapshot
        self.pairs_path = pairs_for_run(
            self.cfg, self.base_model, self.out, world=self.world, tokenizer=self.tokenizer
        )
        pairs = load_pairs(self.pairs_path)[: s.n_pairs]
        self.batches = encode_pairs(
            self.tokenizer, pairs, batch_size=s.batch_size, source=str(self.pairs_path)
        )
        self.settings = dict(
            steps=s.steps,
            metric=choose_metric(s.metric, self.batches),
            top_k=s.top_k,
            schedule=s.schedule,
            tokens_per_pass=s.tokens_per_pass,
        )
        return {
            "pairs": len(pairs),
            "path": str(self.pairs_path),
            "metric": self.settings["metric"],
        }

    def _snapshots_on_disk(self) -> list[tuple[int, Path]]:
        found = [
            p
            for p in [self.out / "base" / "circuit", *self.out.glob("stage*/checkpoint-*/circuit")]
            if p.is_dir()
        ]
        return sorted((read_snapshot(p).step, p) for p in found)

    # 2. base snapshot -------------------------------------------------------------------------
    def base_snapshot(self) -> list[str]:
        """Snapshot the base model at step 0 (skipped when already on disk)."""
        out = self.out / "base" / "circuit"
        if out.exists():
            return read_snapshot(out).heads
        _clear_stale(out.parent)
        model = load_model(self.base_model, dtype=self.cfg.model.dtype)
        with preserved_rng():
            snap = self._build(model, step=0)
        save_snapshot(snap, out)
        self.on_snapshot(0, snap, out)
        return list(snap.heads)

    def _build(self, model, step: int) -> CircuitSnapshot | FailedSnapshot:
        device = next(model.parameters()).device
        return build_or_fail(
            model, [b.to(device) for b in self.batches], step=step, **self.settings
        )

    # 3. stages --------------------------------------------------------------------------------
    def stage_dir(self, i: int) -> Path:
        return self.out / f"stage{i}-{self.cfg.stages[i].method}"

    def step_offset(self, i: int) -> int:
        return sum(s.max_steps for s in self.cfg.stages[:i])

    def train_stage(self, i: int, records: list[dict] | None = None) -> dict:
        """Train stage `i` from the previous stage's model, resuming from its last checkpoint."""
        stage, sdir = self.cfg.stages[i], self.stage_dir(i)
        final = sdir / "final"
        if final.is_dir():
            return {"stage": i, "method": stage.method, "skipped": "already trained"}
        self._snapshot_unfinished(i)
        resume = _last_checkpoint(sdir)
        if resume and int(resume.name.split("-")[1]) >= stage.max_steps:
            # trained to the end but killed before the final save: the last checkpoint is the model
            with atomic_dir(final) as tmp:
                load_model(resume, dtype=self.cfg.model.dtype).save_pretrained(str(tmp))
                self.tokenizer.save_pretrained(str(tmp))
            return {
                "stage": i,
                "method": stage.method,
                "steps": stage.max_steps,
                "resumed_from": resume.name,
            }
        source = self.base_model if i == 0 else str(self.stage_dir(i - 1) / "final")
        model = load_model(source, dtype=self.cfg.model.dtype)
        s = self.cfg.snapshot
        hook = CircuitSnapshotCallback(
            [b.to(next(model.parameters()).device) for b in self.batches],
            **self.settings,
            step_offset=self.step_offset(i),
            on_snapshot=self.on_snapshot,
            mode=s.mode,
            pairs_path=self.pairs_path,
            n_pairs=s.n_pairs,
            batch_size=s.batch_size,
            dtype=self.cfg.model.dtype,
            device=s.device,
        )
        callbacks = [_MetricsToTracker(self, self.step_offset(i))] + (
            [hook] if self.cfg.snapshot.enabled else []
        )
        if records is None:
            records = self.teacher_records(i) if stage.method == "distill" else self.records
        trainer = build_trainer(
            stage, model, self.tokenizer, records, sdir, seed=self.cfg.seed, callbacks=callbacks
        )
        try:
            result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except Exception as e:
            if is_write_error(e):  # a checkpoint that could not be written: say where, in one line
                raise write_failure(sdir, e) from e
            raise
        self.snapshot_seconds += hook.seconds
        with atomic_dir(final) as tmp:
            trainer.save_model(str(tmp))
            self.tokenizer.save_pretrained(str(tmp))
        return {
            "stage": i,
            "method": stage.method,
            "steps": trainer.state.global_step,
            "train_loss": result.training_loss,
            "resumed_from": resume.name if resume else None,
        }

    def _snapshot_unfinished(self, i: int) -> None:
        """Snapshot saved checkpoints that have none (a run killed mid-snapshot), from disk."""
        if not self.cfg.snapshot.enabled:
            return
        for ckpt in checkpoints(self.stage_dir(i)):
            if (ckpt / "circuit").exists():
                continue
            _clear_stale(ckpt)
            step = self.step_offset(i) + int(ckpt.name.split("-")[1])
            with preserved_rng():
                snap = self._build(load_model(ckpt, dtype=self.cfg.model.dtype), step=step)
            self.snapshot_seconds += snap.seconds
            save_snapshot(snap, ckpt / "circuit")
            self.on_snapshot(step, snap, ckpt / "circuit")

    def teacher_records(self, i: int) -> list[dict]:
        """Distillation data: the teacher's own solutions, kept where they are correct (rejection
        sampling), cached in the stage directory so a rerun does not sample again."""
        cache = self.stage_dir(i) / "teacher_solutions.jsonl"
        if cache.is_file():
            return read_jsonl(cache)
        stage, ev = self.cfg.stages[i], self.cfg.evaluation
        teacher_tok = load_tokenizer(stage.teacher)
        prompts = [
            teacher_tok.apply_chat_template(
                prompt_messages(r["problem"]), tokenize=False, add_generation_prompt=True
            )
            for r in self.records
        ]
        spec = replace(sampling_for(ev), n=1)  # one solution per problem, kept if correct
        result = generate(stage.teacher, prompts, spec, backend=ev.backend)
        kept = [
            r | {"solution": row[0].text}
            for r, row in zip(self.records, result.completions, strict=True)
            if is_correct(row[0].text, r["answer"])
        ]
        if not kept:
            raise ValueError(
                f"teacher {stage.teacher} solved none of {len(self.records)} problems: nothing to distill; "
                "use a stronger teacher or more max_tokens"
            )
        self.stage_dir(i).mkdir(parents=True, exist_ok=True)
        atomic_write_text(cache, "".join(json.dumps(r) + "\n" for r in kept))
        return kept

    # evaluation -------------------------------------------------------------------------------
    def _eval_inputs(self):
        if not hasattr(self, "_benchmarks"):
            self._benchmarks = benchmarks_for(self.cfg.evaluation, self.cfg.world)
        return self._benchmarks

    def evaluate_checkpoints(self, i: int | None) -> dict[int, dict]:
        """Evaluate every `evaluation.every`-th save of stage `i` (None: the base model, step 0);
        results go to `checkpoint-N/eval/` and to MLflow at that save's step. Done ones are skipped."""
        ev = self.cfg.evaluation
        if not ev.enabled:
            return {}
        if i is None:
            targets = [(0, Path(self.base_model), self.out / "base" / "eval")]
        else:
            ckpts = checkpoints(self.stage_dir(i))[ev.every - 1 :: ev.every]
            targets = [
                (self.step_offset(i) + int(c.name.split("-")[1]), c, c / "eval") for c in ckpts
            ]
        spec = sampling_for(ev)
        done = {}
        for step, model_dir, out in targets:
            if not (out / "metrics.json").is_file():
                results = evaluate_model(
                    model_dir,
                    self._eval_inputs(),
                    spec,
                    backend=ev.backend,
                    overlong=ev.overlong,
                    keep_partial=out,  # a dying engine's finished samples: eval.partial/
                )
                if out.exists():  # a leftover without metrics.json: an interrupted write
                    shutil.rmtree(out)
                with atomic_dir(out) as tmp:
                    for b, r in results.items():
                        r.table.to_parquet(tmp / f"{b}.parquet", index=False)
                    (tmp / "metrics.json").write_text(
                        json.dumps({b: r.metrics for b, r in results.items()}, indent=2)
                    )
                metrics = {b: r.metrics for b, r in results.items()}
                _say(
                    f"[sparks] evaluation step {step}: "
                    + ", ".join(f"{b} pass@1 {m['pass@1']:.3f}" for b, m in metrics.items())
                )
                if step not in self.eval_logged:
                    self.tracker.log_metrics(
                        {f"eval/{b}/{k}": v for b, m in metrics.items() for k, v in m.items()}, step
                    )
                    for b, r in results.items():
                        self.tracker.log_table(
                            r.table.to_dict(orient="records"), f"eval/step-{step}/{b}.json"
                        )
                    self.eval_logged.add(step)
            done[step] = json.loads((out / "metrics.json").read_text())
        return done

    # the hook's report ------------------------------------------------------------------------
    def on_snapshot(self, step: int, snap: CircuitSnapshot, path: Path) -> None:
        """Ledger row, MLflow metrics and artifacts, and a refreshed trajectory for one snapshot."""
        self.tables = [t for t in self.tables if t.step.iloc[0] != step] + [head_table(snap)]
        self.tables.sort(key=lambda t: t.step.iloc[0])
        ledger = build_ledger(self.tables)
        row = step_summary(ledger).set_index("step").loc[step]
        now = ledger[ledger.step == step]
        if isinstance(snap, FailedSnapshot):
            # no circuit to report: the save is marked failed, the run goes on
            _say(f"[sparks] snapshot of step {step} failed ({path}): {snap.reason}")
            if step not in self.logged_steps:
                self.tracker.log_metrics({"circuit/failed": 1.0}, step)
                self.tracker.set_tags({f"sparks.snapshot_failed.step-{step}": snap.reason[:500]})
                self.logged_steps.add(step)
            self._write_ledger(ledger)
            return
        metrics = {
            f"circuit/{k}": int(row[k]) for k in ("heads", "emergent", "activated", "pruned")
        }
        metrics["circuit/failed"] = 0.0
        metrics["circuit/faithfulness"] = snap.faithfulness.get(
            self.cfg.snapshot.top_k, float("nan")
        )
        metrics["circuit/completeness_error"] = snap.completeness_error
        metrics["circuit/seconds"] = snap.seconds
        metrics.update({f"head/{h}": s for h, s in zip(now["head"], now["share"], strict=True)})
        if step not in self.logged_steps:
            self.tracker.log_metrics(metrics, step)
            self.logged_steps.add(step)
        _say(
            f"[sparks] snapshot step {step}: {int(row.heads)} heads ({int(row.emergent)} emergent, "
            f"+{int(row.activated)} -{int(row.pruned)}), faithfulness "
            f"{metrics['circuit/faithfulness']:.2f}, {snap.seconds:.1f}s"
        )
        figs = self.out / "figures"
        figs.mkdir(exist_ok=True)
        hm = heatmap(
            now,
            figs / f"heatmap-step{step}.png",
            title=f"{self.cfg.name}: step {step}, {len(snap.heads)} circuit heads",
        )
        self.tracker.log_artifact(hm, f"snapshots/step-{step}")
        self.tracker.log_artifact(path, f"snapshots/step-{step}")
        self._write_ledger(ledger)
        self.tracker.log_artifact(self._trajectory(ledger), "figures")

    def _trajectory(self, ledger: pd.DataFrame) -> Path:
        curves = {k: pd.Series(v).sort_index() for k, v in self.curves.items() if v}
        return trajectory(
            ledger,
            curves,
            self.out / "figures" / "trajectory.png",
            title=f"{self.cfg.name}: attention heads across saves",
        )

    def _write_ledger(self, ledger: pd.DataFrame) -> None:
        tmp = self.out / ".ledger.parquet.tmp"
        try:
            ledger.to_parquet(tmp, index=False)
        except Exception as e:
            tmp.unlink(missing_ok=True)
            if is_write_error(e):
                raise write_failure(self.out / "ledger.parquet", e) from e
            raise
        tmp.replace(self.out / "ledger.parquet")

    # 4. summarise -----------------------------------------------------------------------------
    def summarise(self) -> dict:
        ledger = build_ledger(self.tables)
        self._write_ledger(ledger)
        self.tracker.log_artifact(self._trajectory(ledger), "figures")
        self.tracker.log_table(ledger.to_dict(orient="records"), "ledger.json")
        wall = time.perf_counter() - self.started
        self.tracker.log_metrics(
            {"run/wall_seconds": wall, "run/snapshot_seconds": self.snapshot_seconds},
            self.step_offset(len(self.cfg.stages)),
        )
        self.tracker.end()
        last = ledger[ledger.step == ledger.step.max()]
        evals = evaluation_files(self.out, [(s.method, s.max_steps) for s in self.cfg.stages])
        pass_at_1 = {
            step: {b: round(m["pass@1"], 4) for b, m in json.loads(p.read_text()).items()}
            for step, p in sorted(evals.items())
        }
        return {
            "output_dir": str(self.out),
            "mlflow_uri": self.tracker.uri,
            "run_id": self.tracker.run_id,
            "offline": self.tracker.offline,
            "links": self.tracker.links(),
            "saves": int(ledger.step.nunique()),
            "final_heads": last.loc[last.in_circuit, "head"].tolist(),
            "emergent": last.loc[last.emergent, "head"].tolist(),
            "pass@1": pass_at_1,
            "wall_seconds": round(wall, 1),
            "snapshot_seconds": round(self.snapshot_seconds, 1),
        }


def _clear_stale(d: Path) -> None:
    """Remove the temporary snapshot directories a killed run left in `d` (never renamed: never
    read; the snapshot is built again)."""
    for stale in d.glob(".circuit.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _say(line: str) -> None:
    """One console line, above the stage's progress bar when one is showing."""
    from tqdm import tqdm

    tqdm.write(line)


def evaluation_files(out: Path, stages: list[tuple[str, int]]) -> dict[int, Path]:
    """metrics.json of the base model (step 0) and of every evaluated save, by the run's global
    step; `stages` is each stage's (method, max_steps), in order."""
    found, offset = {}, 0
    if (out / "base" / "eval" / "metrics.json").is_file():
        found[0] = out / "base" / "eval" / "metrics.json"
    for i, (method, max_steps) in enumerate(stages):
        for c in checkpoints(out / f"stage{i}-{method}"):
            if (c / "eval" / "metrics.json").is_file():
                found[offset + int(c.name.split("-")[1])] = c / "eval" / "metrics.json"
        offset += max_steps
    return found


def checkpoints(d: Path) -> list[Path]:
    """Complete checkpoints (the Trainer writes trainer_state.json last), in step order."""
    ckpts = [
        p
        for p in d.glob("checkpoint-*")
        if re.fullmatch(r"checkpoint-\d+", p.name) and (p / "trainer_state.json").is_file()
    ]
    return sorted(ckpts, key=lambda p: int(p.name.split("-")[1]))


def _last_checkpoint(d: Path) -> Path | None:
    ckpts = checkpoints(d)
    return ckpts[-1] if ckpts else None


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                out.update(_flatten(item, f"{key}.{i}."))
        else:
            out[key] = v
    return out


def run_training(cfg: RunConfig) -> dict:
    """The whole run without Prefect (the flow calls the same steps as tasks)."""
    run = TrainingRun(cfg)
    run.prepare()
    run.build_pairs()
    run.base_snapshot()
    run.evaluate_checkpoints(None)
    for i in range(len(cfg.stages)):
        run.train_stage(i)
        run.evaluate_checkpoints(i)
    return run.summarise()

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

The pipeline only orders these steps. Who does each on several processes is `sparks.train.ranks`'
(every rank trains, the main process does the rest); what a snapshot becomes (ledger, MLflow,
figures) is `sparks.log.recorder`'s; what is on disk is `sparks.train.saves`'. With
`distributed.processes` > 1 a stage's training is launched under accelerate (`sparks.train.launch`)
and this process reads back what the launched main process recorded.

Layout of `output_dir`:
    run.json, config.json, pairs.jsonl, mlflow_run.json, pending.jsonl (while MLflow is away)
    base/circuit/                       snapshot of the base model (step 0); with several pair
                                        sets also circuit-NAME/ (sparks.track.pair_sets), everywhere
    base/eval/, stage{i}-{method}/checkpoint-N/eval/   per-problem tables and metrics.json
    stage{i}-{method}/checkpoint-N/circuit/   one snapshot per save; final/ is the stage's model
    ledger.parquet, figures/trajectory.png, figures/heatmap-step{N}.png
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparks.circuits.snapshot import (
    CircuitSnapshot,
    FailedSnapshot,
    build_or_fail,
    read_snapshot,
    save_snapshot,
)
from sparks.config import WORLD, DistillStage, RunConfig
from sparks.evaluate.runner import (
    benchmarks_for,
    evaluate_model,
    evaluated,
    read_eval_metrics,
    write_eval_dir,
)
from sparks.files import atomic_write_text, is_write_error, write_failure
from sparks.log.console import say
from sparks.log.recorder import MetricsToRecorder, Recorder
from sparks.log.tracking import Tracker
from sparks.models.loading import load_model, load_tokenizer
from sparks.pairs import pairs_for_run
from sparks.problems.sources import load_problems
from sparks.track.hook import (
    CircuitSnapshotCallback,
    clear_stale,
    preserved_rng,
    snapshot_missing,
)
from sparks.track.pair_sets import PairSet, encode_set, snapshot_dirs
from sparks.train.disk import check_disk, run_shape
from sparks.train.launch import is_deepspeed, launch_stage, launched
from sparks.train.ranks import Ranks, current_ranks
from sparks.train.retention import StatePruner, prune_stage
from sparks.train.saves import (
    checkpoints,
    clear_incomplete,
    evaluated_saves,
    evaluation_files,
    is_model_dir,
    last_checkpoint,
    model_from_checkpoint,
    publish_model,
    resume_point,
    save_step,
    stage_dir,
)
from sparks.train.teacher import teacher_solutions
from sparks.train.trainers import build_trainer
from sparks.train.writers import hold, release
from sparks.world.build import World, world_for


@dataclass
class TrainingRun:
    """One run's steps. Under a multi-process launch every rank builds one; `ranks` decides who
    does what (every rank trains; the main process does everything else, the others wait)."""

    cfg: RunConfig
    ranks: Ranks = field(default_factory=Ranks)
    out: Path = field(init=False)
    recorder: Recorder | None = field(init=False, default=None)  # the main process's only
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)  # wall clock: snapshots made since
    # what `prepare` and `build_pairs` set up
    world: World | None = field(init=False, default=None)
    base_model: str = field(init=False, default="")
    records: list[dict] = field(init=False, default_factory=list)
    tokenizer: Any = field(init=False, default=None)
    sets: list[PairSet] = field(init=False, default_factory=list)  # the primary set first
    _benchmarks: dict[str, list[dict]] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        self.out = Path(self.cfg.output_dir)
        if self.ranks.is_main:
            tracker = Tracker(
                self.cfg.tracking.mlflow_uri, self.cfg.tracking.experiment, self.cfg.name, self.out
            )
            sets = list(self.cfg.snapshot.pair_sets())
            self.recorder = Recorder(tracker, self.out, self.cfg.name, sets=sets)

    @property
    def rec(self) -> Recorder:
        """The main process's recorder (what only the main process does asks for it)."""
        if self.recorder is None:
            raise RuntimeError(
                f"rank {self.ranks.rank} has no recorder: only the main process records"
            )
        return self.recorder

    @property
    def primary(self) -> PairSet:
        """The run's primary pair set (the first): its circuit is `circuit/`, its heads the run's."""
        return self.sets[0]

    @property
    def tracker(self) -> Tracker:
        return self.rec.tracker

    # 1. prepare -------------------------------------------------------------------------------
    def prepare(self) -> dict:
        """Build inputs (the main process first; the others then read its caches), check them
        all before training, and open the MLflow run (main process). Every process first
        registers as a writer of output_dir: another live run's there refuses this one."""
        r = self.ranks
        hold(self.out, role=f"rank {r.rank} of {r.world_size}" if r.distributed else "run")
        self.ranks.main_then_all(self._load_inputs, "building the world and reading the data")
        self.ranks.on_main(self._open_run, "opening the MLflow run", share=False)
        self.ranks.on_main(self._say_launch, "checking the launch", share=False)
        return {"problems": len(self.records), "base_model": self.base_model}

    def _say_launch(self) -> None:
        """What this launch started, recorded (launch.json, MLflow tags) and, where it differs
        from the config or suits this machine badly, said in one line each. The process that
        launches a stage says nothing: its stage's main rank does."""
        from sparks.train.started import bf16_cpu, differences, started

        asked = self.cfg.distributed.processes
        if asked > 1 and not self.ranks.distributed and not launched():
            return  # this process will launch the stage; the launched ranks report
        actual = started(self.ranks.world_size)
        for line in differences(
            actual, asked=asked, cores=os.cpu_count() or 1, env=os.environ, bf16_cpu=bf16_cpu()
        ):
            say(f"[sparks] launch: {line}")
        atomic_write_text(self.out / "launch.json", json.dumps(actual, indent=2))
        self.tracker.set_tags({f"sparks.launch.{k}": str(v) for k, v in actual.items()})

    def _load_inputs(self) -> None:
        cfg = self.cfg
        pairs = cfg.resolved_pairs()
        uses_world = WORLD in (cfg.model.path, cfg.data.train) or (
            pairs.mode != "file" and WORLD in pairs.sources
        )
        self.world = world_for(cfg.world) if uses_world else None
        self.base_model = (
            str(self.world.model_dir) if self.world and cfg.model.path == WORLD else cfg.model.path
        )
        self.records = load_problems(
            cfg.data.train, world=self.world, max_samples=cfg.data.max_samples, data=cfg.data
        )
        self.tokenizer = load_tokenizer(self.base_model)

    def _open_run(self) -> None:
        cfg = self.cfg
        # before anything is written: a run whose saves cannot fit is refused in one line
        check_disk(cfg, run_shape(cfg), deepspeed=is_deepspeed(cfg.distributed))
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
        # what a launched stage reads (`sparks train OUTPUT_DIR/config.json --stage I`)
        atomic_write_text(self.out / "config.json", cfg.model_dump_json(indent=2))
        self.tracker.start(
            _flatten(cfg.model_dump()),
            {
                "method": "+".join(s.method for s in cfg.stages),
                "base_model": cfg.model.path,
                "sparks.run": cfg.name,
                # circuit/* and head/L*H* are this set's (logged once, not also under its name)
                "sparks.primary_pair_set": cfg.snapshot.primary_set() or "default",
            },
        )
        self._reload()

    def _reload(self) -> None:
        """A resumed run, or a stage trained by launched processes: the snapshots on disk make the
        ledger, and what MLflow already has is not logged twice."""
        ev = self.cfg.evaluation
        eval_key = f"eval/{ev.benchmarks[0]}/pass@1" if ev.benchmarks else None
        self.rec.resume([(n, p) for _, n, p in self._snapshots_on_disk()], eval_key=eval_key)

    def build_pairs(self) -> dict:
        """Each pair set's pairs (built once into output_dir/pairs.jsonl, pairs-NAME.jsonl),
        encoded for every snapshot; the metric is chosen per set (auto: by what its pairs hold)."""
        s = self.cfg.snapshot
        self.sets = []
        for i, name in enumerate(s.pair_sets()):
            path: Path = self.ranks.main_then_all(
                lambda name=name: pairs_for_run(  # type: ignore[misc]
                    self.cfg, self.base_model, self.out, world=self.world,
                    tokenizer=self.tokenizer, name=name,
                ),
                f"building the pairs{' of ' + name if name else ''}",
            )  # fmt: skip
            self.sets.append(encode_set(name, path, self.tokenizer, s, primary=i == 0))
        info = {
            ps.name: {
                "pairs": sum(len(b.last) for b in ps.batches),
                "path": str(ps.pairs_path),
                "metric": ps.spec.metric,
            }
            for ps in self.sets
        }
        return info[""] if "" in info else info  # one set: as before

    def _snapshot_dirs(self) -> list[tuple[str, Path]]:
        """(set, directory) of every snapshot on disk: the base's and every save's."""
        sets = list(self.cfg.snapshot.pair_sets())
        saves = [self.out / "base", *self.out.glob("stage*/checkpoint-*")]
        return [(n, p) for save in saves for n, p in snapshot_dirs(save, sets)]

    def _snapshots_on_disk(self) -> list[tuple[int, str, Path]]:
        """(step, set, directory) of every snapshot on disk, in step order."""
        found = self._snapshot_dirs()
        return sorted(((read_snapshot(p).step, n, p) for n, p in found), key=lambda x: x[0])

    # 2. base snapshot -------------------------------------------------------------------------
    def base_snapshot(self) -> list[str]:
        """Snapshot the base model at step 0 (skipped when already on disk)."""
        return self.ranks.on_main(self._base_snapshot, "the base snapshot")

    def _base_snapshot(self) -> list[str]:
        model = None
        for ps in self.sets:  # each set's base circuit: what its heads emerge against
            out = self.out / "base" / ps.subdir
            if out.exists():
                continue
            clear_stale(out.parent, ps.subdir)
            model = model or load_model(self.base_model, dtype=self.cfg.model.dtype)
            with preserved_rng():
                snap = self._build(model, ps, step=0)
            save_snapshot(snap, out)
            self.rec.on_snapshot(0, snap, out, ps.name)
        return list(read_snapshot(self.out / "base" / self.primary.subdir).heads)

    def _build(self, model, ps: PairSet, step: int) -> CircuitSnapshot | FailedSnapshot:
        device = next(model.parameters()).device
        batches = [b.to(device) for b in ps.batches]
        return build_or_fail(model, batches, ps.spec, step=step, pairs=ps.record)

    # 3. stages --------------------------------------------------------------------------------
    def stage_dir(self, i: int) -> Path:
        return stage_dir(self.out, i, self.cfg.stages[i].method)

    def step_offset(self, i: int) -> int:
        return sum(s.max_steps for s in self.cfg.stages[:i])

    def train_stage(self, i: int, records: list[dict] | None = None) -> dict:
        """Train stage `i` from the previous stage's model, resuming from its last checkpoint.
        With `distributed.processes` > 1 (and not already launched) the training runs under
        `accelerate launch`, and this process reads back what the launched main process recorded."""
        stage, sdir = self.cfg.stages[i], self.stage_dir(i)
        final = sdir / "final"
        # saves a killed run (or a killed snapshot process) left without a snapshot
        self.ranks.on_main(lambda: self._catch_up(i), "catching up snapshots and retention")
        info = {"stage": i, "method": stage.method}
        if is_model_dir(final):
            return info | {"skipped": "already trained"}
        resume = resume_point(sdir)
        if resume and int(resume.name.split("-")[1]) >= stage.max_steps:
            # trained to the end but killed before the final save: the last checkpoint is the model
            self.ranks.on_main(
                lambda: model_from_checkpoint(
                    resume, final, self.tokenizer, dtype=self.cfg.model.dtype
                ),
                "writing final/",
            )
            if self.recorder is not None:
                self.rec.end_of_stage(resume / "trainer_state.json", self.step_offset(i))
            return info | {"steps": stage.max_steps, "resumed_from": resume.name}
        if self.cfg.distributed.processes > 1 and not self.ranks.distributed and not launched():
            return info | self._launch(i)
        if records is None:
            records = self.ranks.main_then_all(
                lambda: self.teacher_records(i) if stage.method == "distill" else self.records,
                "sampling the teacher's solutions",
            )
        source = self.base_model if i == 0 else str(self.stage_dir(i - 1) / "final")
        model = load_model(source, dtype=self.cfg.model.dtype)
        shared: dict = {}  # the hooks' common memo: a save's weights hashed once for all sets
        hooks = [self._hook(i, model, ps, shared) for ps in self.sets]
        callbacks: list[Any] = list(hooks) if self.cfg.snapshot.enabled else []
        if self.recorder is not None:
            callbacks.append(MetricsToRecorder(self.recorder, self.step_offset(i)))
            callbacks.append(StatePruner(sdir, self.cfg.checkpoints))
        trainer = build_trainer(
            stage,
            model,
            self.tokenizer,
            records,
            sdir,
            seed=self.cfg.seed,
            callbacks=callbacks,
            timeout_minutes=self.cfg.distributed.timeout_minutes,
        )
        try:
            result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        except Exception as e:
            if is_write_error(e):  # a checkpoint that could not be written: say where, in one line
                if self.ranks.is_main:
                    clear_incomplete(sdir)  # the half-written save frees its space
                raise write_failure(sdir, e) from e
            raise
        self._save_final(trainer, final)
        # process-mode snapshots whose process died are built now, from their checkpoints
        self.ranks.on_main(lambda: self._catch_up(i), "catching up snapshots and retention")
        return info | {
            "steps": trainer.state.global_step,
            "train_loss": result.training_loss,
            "resumed_from": resume.name if resume else None,
        }

    def _hook(self, i: int, model, ps: PairSet, shared: dict) -> CircuitSnapshotCallback:
        s, rec = self.cfg.snapshot, self.recorder
        # transformers expects one callback per class: each further pair set gets its own name
        cls: type[CircuitSnapshotCallback] = CircuitSnapshotCallback
        if ps is not self.primary:
            cls = type(f"CircuitSnapshotCallback[{ps.name}]", (CircuitSnapshotCallback,), {})
        return cls(
            [b.to(next(model.parameters()).device) for b in ps.batches],
            ps.spec,
            pairs=ps.record,
            step_offset=self.step_offset(i),
            on_snapshot=(lambda step, snap, out: rec.on_snapshot(step, snap, out, ps.name))
            if rec
            else None,
            mode=s.mode,
            pairs_path=ps.pairs_path,
            subdir=ps.subdir,
            # process mode: one process per save snapshots every set from one loaded model
            more_sets=[
                {
                    "name": o.name,
                    "pairs": o.pairs_path,
                    "subdir": o.subdir,
                    "metric": o.spec.metric,
                }
                for o in self.sets[1:]
            ]
            if s.mode == "process" and ps is self.primary
            else [],
            led=s.mode == "process" and ps is not self.primary,
            shared=shared,
            dtype=self.cfg.model.dtype,
            ranks=self.ranks,
        )

    def _launch(self, i: int) -> dict:
        """Stage `i` on `distributed.processes` ranks (`accelerate launch`); its main process logs
        snapshots and metrics to this run; this process then reads the ledger and curves back."""
        n = self.cfg.distributed.processes
        say(
            f"[sparks] stage {i} ({self.cfg.stages[i].method}) on {n} processes (accelerate launch)"
        )
        launch_stage(self.cfg.distributed, self.out / "config.json", i)
        self._reload()
        last = last_checkpoint(self.stage_dir(i))
        if last is not None:
            self.rec.read_curves(last / "trainer_state.json", self.step_offset(i))
        return {"steps": self.cfg.stages[i].max_steps, "processes": n}

    def _save_final(self, trainer, final: Path) -> None:
        """The stage's model into `final/`: every rank enters the save (a sharded model is gathered
        there), the main process writes it under one temporary name and renames it when complete."""
        tmp = final.parent / ".final.tmp-save"
        self.ranks.on_main(lambda: shutil.rmtree(tmp, ignore_errors=True), "clearing final/")
        try:
            trainer.save_model(str(tmp))
        except Exception as e:
            if is_write_error(e):
                raise write_failure(final, e) from e
            raise

        def write_final() -> None:
            self.tokenizer.save_pretrained(str(tmp))
            publish_model(tmp, final)

        self.ranks.on_main(write_final, "writing final/")

    def _catch_up(self, i: int) -> None:
        """Saves without a snapshot get one, then retention applies to stage `i` (which finishes
        a removal a kill interrupted)."""
        clear_incomplete(self.stage_dir(i))
        self._snapshot_unfinished(i)
        self.retain(i)

    def retain(self, i: int) -> int:
        """Apply `checkpoints:` to stage `i`'s saves: older saves drop optimizer state, and (with
        keep_weights false) weights once their snapshot and evaluation are on disk. Bytes freed."""
        sdir, ev, snap = self.stage_dir(i), self.cfg.evaluation, self.cfg.snapshot
        to_evaluate = {c.name for c in evaluated_saves(sdir, ev.every)} if ev.enabled else set()

        def done(c: Path) -> bool:
            return (not snap.enabled or all((c / ps.subdir).is_dir() for ps in self.sets)) and (
                c.name not in to_evaluate or evaluated(c / "eval")
            )

        return prune_stage(sdir, self.cfg.checkpoints, weights_done=done)

    def _snapshot_unfinished(self, i: int) -> None:
        """Snapshot saved checkpoints that have none (a run or a snapshot process killed), from disk."""
        if not self.cfg.snapshot.enabled:
            return
        saves = [(self.step_offset(i) + save_step(c), c) for c in checkpoints(self.stage_dir(i))]

        def on_snapshot(name):
            return lambda step, snap, out: self.rec.on_snapshot(step, snap, out, name)

        first, *others = self.sets
        snapshot_missing(
            saves,
            first.batches,
            first.spec,
            pairs=first.record,
            dtype=self.cfg.model.dtype,
            on_snapshot=on_snapshot(first.name),
            subdir=first.subdir,
            more_sets=[
                {
                    "batches": ps.batches,
                    "subdir": ps.subdir,
                    "spec": ps.spec,
                    "pairs": ps.record,
                    "on_snapshot": on_snapshot(ps.name),
                }
                for ps in others
            ],  # fmt: skip
        )

    def teacher_records(self, i: int) -> list[dict]:
        """Distillation data for stage `i`: the teacher's correct solutions, cached in its directory."""
        stage = self.cfg.stages[i]
        if not isinstance(stage, DistillStage):
            raise ValueError(
                f"stage {i} is a {stage.method} stage: only distill stages have a teacher"
            )
        cache = self.stage_dir(i) / "teacher_solutions.jsonl"
        return teacher_solutions(stage.teacher, self.records, self.cfg.evaluation, cache)

    # evaluation -------------------------------------------------------------------------------
    def _eval_inputs(self):
        if self._benchmarks is None:
            self._benchmarks = benchmarks_for(self.cfg.evaluation, self.cfg.world)
        return self._benchmarks

    def evaluate_checkpoints(self, i: int | None) -> dict[int, dict]:
        """Evaluate every `evaluation.every`-th save of stage `i` (None: the base model, step 0);
        results go to `checkpoint-N/eval/` and to MLflow at that save's step. Done ones are skipped.
        The main process evaluates; every rank gets the metrics."""
        if not self.cfg.evaluation.enabled:
            return {}
        return self.ranks.on_main(lambda: self._evaluate(i), "evaluation")

    def _evaluate(self, i: int | None) -> dict[int, dict]:
        ev = self.cfg.evaluation
        if i is None:
            targets = [(0, Path(self.base_model), self.out / "base" / "eval")]
        else:
            ckpts = evaluated_saves(self.stage_dir(i), ev.every)
            targets = [
                (self.step_offset(i) + int(c.name.split("-")[1]), c, c / "eval") for c in ckpts
            ]
        spec = ev.sampling()
        done = {}
        for step, model_dir, out in targets:
            if not evaluated(out):
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
                write_eval_dir(out, results)
                self.rec.on_evaluation(step, results)
            done[step] = read_eval_metrics(out)
        if i is not None:
            self.retain(i)  # what waited for these evaluations can go now
        return done

    # 4. summarise -----------------------------------------------------------------------------
    def summarise(self) -> dict:
        """Final ledger, figure and MLflow table; the run ends in MLflow. Every rank gets the summary."""
        return self.ranks.on_main(self._summarise, "the summary")

    def snapshot_seconds(self) -> dict[str, float]:
        """Seconds spent building snapshots in this run, per pair set ('' for a one-set run): read
        from every snapshot written since the run started, so that inline, process-mode, launched
        and caught-up snapshots all count."""
        from datetime import datetime

        spent: dict[str, float] = {ps.name: 0.0 for ps in self.sets}
        for name, path in self._snapshot_dirs():  # snapshot.json alone: no edge tables read
            meta = json.loads((path / "snapshot.json").read_text())
            created = datetime.strptime(meta["created"], "%Y-%m-%dT%H:%M:%S%z").timestamp()
            if "seconds" in meta and created >= self.started_at - 1:
                spent[name] = spent.get(name, 0.0) + meta["seconds"]
        return spent

    def _summarise(self) -> dict:
        ledger = self.rec.finish()
        wall = time.perf_counter() - self.started
        by_set = self.snapshot_seconds()
        spent = sum(by_set.values())
        recorded = dict(self.rec.record_seconds)
        self.tracker.log_metrics(
            {"run/wall_seconds": wall, "run/snapshot_seconds": spent,
             "run/record_seconds": sum(recorded.values())}
            | {f"run/snapshot_seconds/{n}": v for n, v in by_set.items() if n}
            | {f"run/record_seconds/{n}": v for n, v in recorded.items() if n},
            self.step_offset(len(self.cfg.stages)),
        )  # fmt: skip
        self.tracker.end()
        evals = evaluation_files(self.out, [(s.method, s.max_steps) for s in self.cfg.stages])
        pass_at_1 = {
            step: {b: round(m["pass@1"], 4) for b, m in json.loads(p.read_text()).items()}
            for step, p in sorted(evals.items())
        }
        summary = {
            "status": "FINISHED",
            "output_dir": str(self.out),
            "mlflow_uri": self.tracker.uri,
            "run_id": self.tracker.run_id,
            "offline": self.tracker.offline,
            "links": self.tracker.links(),
            **ledger,
            "pass@1": pass_at_1,
            "wall_seconds": round(wall, 1),
            "snapshot_seconds": round(spent, 1),
            "snapshot_seconds_by_set": {n: round(v, 1) for n, v in by_set.items() if n},
            # recording them (ledger, MLflow, figures): in this process, this run
            "record_seconds": round(sum(recorded.values()), 1),
            "record_seconds_by_set": {n: round(v, 1) for n, v in recorded.items() if n},
            "processes": max(self.ranks.world_size, self.cfg.distributed.processes),
            # what the launch really started (the launched stage's main rank wrote it)
            "launch": json.loads((self.out / "launch.json").read_text())
            if (self.out / "launch.json").is_file()
            else None,
        }
        atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2, default=str))
        return summary

    def end_early(self, e: BaseException) -> str:
        """The run stopped before its end (cancelled, terminated, interrupted or failed): MLflow's
        run ends KILLED or FAILED with the reason as a tag, and summary.json says what was done
        (the ledger on disk already holds every snapshot made). Returns the status."""
        status = "KILLED" if stopped(e) else "FAILED"
        if self.recorder is None or not self.ranks.is_main or not (self.out / "run.json").is_file():
            return status  # nothing was started here (refused input): nothing to end or keep
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}".strip(": ")
        primary = self.rec.tables.get(self.rec.sets[0], [])
        saves = sorted({int(t.step.iloc[0]) for t in primary})
        summary = {
            "status": status,
            "reason": reason[:500],
            "output_dir": str(self.out),
            "saves": saves,
            "wall_seconds": round(time.perf_counter() - self.started, 1),
        }
        try:
            atomic_write_text(self.out / "summary.json", json.dumps(summary, indent=2))
        except OSError:
            pass  # a full disk: MLflow still hears of the end
        if self.tracker.run_id is not None or self.tracker.offline:
            self.tracker.set_tags({"sparks.end": status, "sparks.end_reason": reason[:500]})
            self.tracker.end(status)
        say(
            f"[sparks] run {status.lower()} ({reason[:200]}); what was done is kept: rerun to resume"
        )
        return status


class Terminated(BaseException):
    """SIGTERM reached a run (`sparks stop`, a scheduler, a cancel): it ends as killed, cleanly."""


def terminate_on_sigterm() -> None:
    """SIGTERM raises `Terminated` in this (main) thread, so the run ends cleanly: MLflow's run
    KILLED, summary.json written, the writer lock released (the default would just die)."""
    import signal

    def handler(signum, frame):
        raise Terminated(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, handler)


def stopped(e: BaseException) -> bool:
    """A stop from outside (a signal, Ctrl-C, a Prefect cancel), not a failure of the run."""
    names = {c.__name__ for c in type(e).__mro__}  # Prefect's TerminationSignal, without Prefect
    return isinstance(e, (KeyboardInterrupt, Terminated)) or bool(
        names & {"ExternalSignal", "TerminationSignal", "CancelledError"}
    )


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


def run_training(cfg: RunConfig, *, stage: int | None = None) -> dict:
    """The whole run without Prefect (the flow calls the same steps as tasks), on this process or
    on every rank of a launch (`accelerate launch ... -m sparks.cli train CONFIG`). With `stage`,
    only that stage's training (what a launched stage of a flow runs)."""
    run = TrainingRun(cfg, ranks=current_ranks(cfg.distributed.timeout_minutes))
    try:
        if stage is not None:
            run.prepare()
            run.build_pairs()
            return run.train_stage(stage)
        run.prepare()
        run.build_pairs()
        run.base_snapshot()
        run.evaluate_checkpoints(None)
        for i in range(len(cfg.stages)):
            run.train_stage(i)
            run.evaluate_checkpoints(i)
        return run.summarise()
    except BaseException as e:
        if stage is None:  # a launched stage's parent run ends it
            run.end_early(e)
        raise
    finally:
        release(run.out)

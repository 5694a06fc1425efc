"""Snapshots fanned out over a real 2-worker Dask cluster (prefect-dask), as `analyze` runs them
on an existing cluster: the same snapshots as one after another, and a worker SIGKILLed in the
middle of a task costs nothing: the task runs again, nothing is lost or written twice."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from sparks.circuits.snapshot import read_snapshot

KEEP = ("*.safetensors", "config.json", "generation_config.json", "tokenizer*", "chat_template*")


def _copies(run: Path, dest: Path) -> list[str]:
    """Four of the run's saves as bare checkpoints (weights, config, tokenizer), no snapshots."""
    out = []
    for c in sorted(run.glob("stage*/checkpoint-*"))[:4]:
        target = dest / f"{c.parent.name}-{c.name}"
        target.mkdir(parents=True)
        for pattern in KEEP:
            for f in c.glob(pattern):
                shutil.copy(f, target / f.name)
        out.append(str(target))
    return out


def _order(p: Path) -> tuple[str, int]:
    return p.parent.name, int(p.name.split("-")[1])


def test_a_cluster_setting_picks_the_task_runner():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from sparks.config import ClusterSettings
    from sparks.flows.cluster import task_runner

    assert isinstance(task_runner(ClusterSettings()), ThreadPoolTaskRunner)
    local = task_runner(ClusterSettings(workers=2))
    assert isinstance(local, DaskTaskRunner) and local.cluster_kwargs["n_workers"] == 2
    remote = task_runner(ClusterSettings(address="tcp://127.0.0.1:8786"))
    assert remote.address == "tcp://127.0.0.1:8786"


def test_snapshots_fan_out_over_dask_and_survive_a_killed_worker(trained_run, tmp_path):
    from distributed import Client, LocalCluster

    from sparks.config import ClusterSettings
    from sparks.flows.analyze import AnalyzeConfig, analyze
    from sparks.flows.evaluate import EvaluateConfig, evaluate_checkpoints
    from tests.flows.dask_kill import KillOnce

    run = Path(trained_run.cfg.output_dir)
    settings = trained_run.cfg.snapshot.model_copy(update={"metric": "logit_diff"})
    pairs = str(run / "pairs.jsonl")
    serial_dirs = _copies(run, tmp_path / "serial")
    serial = analyze(AnalyzeConfig(checkpoints=serial_dirs, pairs=pairs, snapshot=settings))

    fanned_dirs = _copies(run, tmp_path / "fanned")
    marker = tmp_path / "killed.txt"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(KillOnce(str(tmp_path / "fanned"), str(marker)))
        cfg = AnalyzeConfig(
            checkpoints=fanned_dirs,
            pairs=pairs,
            snapshot=settings,
            cluster=ClusterSettings(address=cluster.scheduler_address),
        )
        fanned = analyze(cfg)
        # evaluations of every save of the run directory, on the same (warm) workers
        ev = trained_run.cfg.evaluation.model_copy(update={"limit": 2})
        evaluations = {
            where: evaluate_checkpoints(
                EvaluateConfig(
                    checkpoints=[str(run)],
                    name=f"fanout-{where}",
                    evaluation=ev,
                    tracking=trained_run.cfg.tracking,
                    cluster=cluster_settings,
                )
            )
            for where, cluster_settings in [
                ("serial", ClusterSettings()),
                ("dask", ClusterSettings(address=cluster.scheduler_address)),
            ]
        }

    def scores(results: dict) -> dict:  # all but the speed, which depends on where it ran
        return {
            c: {b: {k: v for k, v in m.items() if k != "tokens_per_second"} for b, m in per.items()}
            for c, per in results.items()
        }

    assert scores(evaluations["dask"]) == scores(evaluations["serial"])
    assert list(evaluations["dask"]) == [
        str(p) for p in sorted(run.glob("stage*/checkpoint-*"), key=_order)
    ]
    assert marker.is_file(), "no worker was killed"
    print(f"killed worker: {marker.read_text()}")
    assert list(fanned["heads"].values()) == list(serial["heads"].values())
    for a, b in zip(serial_dirs, fanned_dirs, strict=True):
        sa, sb = read_snapshot(Path(a) / "circuit"), read_snapshot(Path(b) / "circuit")
        assert sa.step == sb.step and sa.heads == sb.heads
        assert torch.equal(sa.edge_scores, sb.edge_scores)
    assert not list((tmp_path / "fanned").glob("*/.circuit.tmp-*")), "a half-written snapshot"

"""Which Prefect task runner fans a flow's per-checkpoint tasks out: `ClusterSettings` -> runner.

Dask (prefect-dask), not Ray: the same task runner drives a local cluster here and an existing
cluster by address, its workers are plain Python processes (a 2-core machine runs two), a worker
that dies has its task rerun on another by the scheduler, and GPU hosts get one worker per GPU
(dask-cuda's LocalCUDACluster, or `dask worker --resources GPU=1` on a cluster).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

from sparks.config import ClusterSettings


def task_runner(cluster: ClusterSettings):
    """A Prefect task runner for `cluster`: threads for one worker, else Dask."""
    from prefect.task_runners import ThreadPoolTaskRunner

    if cluster.address is None and cluster.workers == 1:
        return ThreadPoolTaskRunner(max_workers=1)
    from prefect_dask import DaskTaskRunner

    if cluster.address is not None:
        return DaskTaskRunner(address=cluster.address)
    kwargs = {"n_workers": cluster.workers, "threads_per_worker": 1, "dashboard_address": None}
    import torch

    if torch.cuda.is_available():  # one GPU per worker process
        try:
            import dask_cuda  # noqa: F401
        except ImportError as e:
            raise ValueError(
                "cluster.workers > 1 on a GPU machine needs dask-cuda (one GPU per worker): "
                "pip install dask-cuda, or set cluster.workers: 1"
            ) from e
        return DaskTaskRunner(
            cluster_class="dask_cuda.LocalCUDACluster",
            cluster_kwargs=kwargs | {"CUDA_VISIBLE_DEVICES": list(range(cluster.workers))},
        )
    return DaskTaskRunner(cluster_kwargs=kwargs | {"processes": True})


def resources(cluster: ClusterSettings) -> AbstractContextManager:
    """Around task submission: ask an existing cluster's workers for GPUs."""
    if cluster.address is None or cluster.gpus_per_task == 0:
        return nullcontext()
    import dask

    return dask.annotate(resources={"GPU": cluster.gpus_per_task})


@contextmanager
def api_for_workers(cluster: ClusterSettings) -> Iterator[None]:
    """Without a Prefect server (a CLI run), start one for the flow run: Dask workers report
    their task runs to it (each would otherwise start a temporary server of its own)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if (cluster.workers == 1 and cluster.address is None) or PREFECT_API_URL.value():
        yield
        return
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            try:
                yield
            finally:
                from prefect.events.worker import EventsWorker
                from prefect.logging.handlers import APILogWorker

                # the run's logs and events reach the server before it stops
                APILogWorker.drain_all(timeout=5)
                EventsWorker.drain_all(timeout=5)
    finally:
        server.stop()

"""Run a training run (`sparks.run.pipeline.run_training`) and SIGKILL it inside one dangerous phase.

    python tests/reliability/killer.py CONFIG.json [PHASE N]
    python tests/reliability/killer.py --serve     # many runs, forked from one import (below)

With PHASE and N the process sends itself SIGKILL (a real kill: no handler, no cleanup) the N-th
time it is inside PHASE, at the moment named below; without them the run goes to the end. The
library is not changed: the kill points wrap library calls from outside, for this process only.
Under a multi-process launch (`accelerate launch tests/reliability/killer.py ...`) every rank
runs it; with KILL_RANK=R only rank R is killed (KILL_WHAT: the launch with it, or the launcher).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from functools import wraps


def _kill() -> None:
    """SIGKILL this process; under a launch, KILL_WHAT=launch first kills the launcher (torch's
    elastic agent, the ranks' parent) and every other rank with it, as a lost machine would, and
    KILL_WHAT=launcher kills the launcher alone and lets this rank go on (its ranks orphaned);
    KILL_WHAT=raise raises instead: the run fails there."""
    sys.stdout.flush()
    what = os.environ.get("KILL_WHAT", "rank")
    if what == "raise":  # not a kill: the run fails there (a bug, a bad file met mid-run)
        raise RuntimeError("injected failure")
    if what == "term":  # a stop from outside: SIGTERM, through the run's own handler
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if what in ("launch", "launcher"):
        import psutil

        agent = psutil.Process().parent()
        others = [p for p in agent.children(recursive=True) if p.pid != os.getpid()]
        for p in [agent, *(others if what == "launch" else [])]:
            p.kill()
        if what == "launcher":
            return
    os.kill(os.getpid(), signal.SIGKILL)


def kill_at(owner, name: str, n: int, *, after: bool, when=lambda *a, **k: True) -> None:
    """Replace owner.name with a wrapper that kills the process at its n-th matching call,
    before the call runs or (after=True) once it has returned."""
    original = getattr(owner, name)
    seen = {"n": 0}

    @wraps(original)
    def wrapper(*args, **kwargs):
        hit = False
        if when(*args, **kwargs):
            seen["n"] += 1
            hit = seen["n"] == n
        if hit and not after:
            _kill()
        out = original(*args, **kwargs)
        if hit and after:
            _kill()
        return out

    setattr(owner, name, wrapper)


def install(phase: str, n: int) -> None:
    import alembic.runtime.migration as migration
    import pandas as pd
    import transformers
    import trl
    from mlflow.tracking import MlflowClient

    import sparks.evaluate.runner as evaluation
    import sparks.log.store as store
    import sparks.train.retention as retention

    points = {
        # the MLflow store's creation: the n-th of MLflow's schema migrations applied, not stamped
        "store-migration": lambda: kill_at(
            migration.HeadMaintainer, "update_to_step", n, after=False
        ),
        # the store complete under its temporary name, not yet renamed into place
        "store-publish": lambda: kill_at(store, "_publish", n, after=False),
        # the run's MLflow run created, its id not yet written to mlflow_run.json
        "run-create": lambda: kill_at(MlflowClient, "create_run", n, after=True),
        # a trainer step: forward and backward done, the optimizer step not yet taken
        "trainer-step": lambda: kill_at(trl.SFTTrainer, "training_step", n, after=True),
        # a checkpoint save: weights and optimizer written, RNG and trainer_state.json not yet
        "checkpoint-save": lambda: kill_at(transformers.Trainer, "_save_rng_state", n, after=False),
        # a snapshot being written: its first table is in the temporary directory, not renamed
        "snapshot-write": lambda: kill_at(
            pd.DataFrame,
            "to_parquet",
            n,
            after=True,
            when=lambda self, path=None, *a, **k: ".circuit.tmp-" in str(path),
        ),
        # the ledger being written: the temporary file is complete, the rename not done
        "ledger-write": lambda: kill_at(
            pd.DataFrame,
            "to_parquet",
            n,
            after=True,
            when=lambda self, path=None, *a, **k: str(path).endswith(".ledger.parquet.tmp"),
        ),
        # an evaluation: samples generated, not graded or written
        "evaluation": lambda: kill_at(evaluation, "grade", n, after=False),
        # an MLflow upload: the server has the batch, the run has not moved on
        "mlflow-upload": lambda: kill_at(MlflowClient, "log_batch", n, after=True),
        # checkpoint retention: what a save loses is recorded, nothing removed yet
        "prune": lambda: kill_at(retention, "atomic_write_text", n, after=True),
    }
    points[phase]()


def run(config_path: str, phase: list | None = None) -> None:
    config = json.loads(open(config_path).read())
    rank = os.environ.get("RANK", "0")
    if phase and os.environ.get("KILL_RANK", rank) == rank:
        install(phase[0], int(phase[1]))
    from sparks.config import validate_config
    from sparks.run.pipeline import run_training, terminate_on_sigterm

    terminate_on_sigterm()  # as `sparks train` does

    summary = run_training(validate_config(config))
    print(json.dumps({"done": True, "saves": summary["saves"]}))


def serve() -> None:
    """Import the heavy libraries once, then fork a fresh process per run. Each request is a JSON
    line {config, phase, stdout, stderr} on stdin; the answer a line {returncode} (negative: the
    signal that ended it, as subprocess reports it). Every run is still its own process, killed
    for real; only the ~7 s of imports each would repeat is shared."""
    import threading
    import traceback

    import pandas  # noqa: F401
    import transformers  # noqa: F401
    import trl  # noqa: F401
    from mlflow.tracking import MlflowClient  # noqa: F401

    import sparks.evaluate.runner  # noqa: F401
    import sparks.run.pipeline  # noqa: F401

    assert threading.active_count() == 1, "a thread started at import: forking would be unsafe"
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:  # the run
            os.environ.update(req.get("env") or {})
            code = 0
            with open(req["stdout"], "w") as out, open(req["stderr"], "w") as err:
                os.dup2(out.fileno(), 1)
                os.dup2(err.fileno(), 2)
                try:
                    run(req["config"], req.get("phase"))
                except BaseException:
                    traceback.print_exc()
                    code = 1
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(json.dumps({"returncode": code}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "--serve":
        serve()
    else:
        run(sys.argv[1], sys.argv[2:4] or None)

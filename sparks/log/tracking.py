"""One MLflow run per training run, resilient to an unreachable tracking server.

If the server cannot be reached (at the start or mid-run), sparks says so once and keeps every
metric, param and artifact path in `pending.jsonl` beside the run's outputs. While it is away,
sparks asks again at most every RETRY_SECONDS; once it answers, what was kept is sent (metrics
already there at their step are not sent twice) and logging goes on as before. If it is still away
when the run ends, `upload_pending` (CLI: `sparks mlflow-sync OUTPUT_DIR`) sends it later. Training
never stops or waits for tracking. Re-running with the same output directory resumes the same run.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sparks.errors import UserError
from sparks.files import atomic_write_text

DEFAULT_STORE = Path("mlflow/data")
RETRY_SECONDS = float(os.environ.get("SPARKS_MLFLOW_RETRY_SECONDS", 20))


OUTPUT_DIR_TAG = "sparks.output_dir"


def default_uri() -> str:
    """The project-local store: SQLite under mlflow/data (what `make up`'s server serves too)."""
    DEFAULT_STORE.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(DEFAULT_STORE / 'mlflow.db').resolve()}"


def _reachable(uri: str) -> bool:
    if not uri.startswith(("http://", "https://")):
        return True
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=3) as r:
            return r.status == 200
    except OSError:
        return False


# MLflow 3's UI files experiments under a GenAI view or a model-training view. Its bundle reads the
# experiment tag below (values genai_development / custom_model_development), and since 3.x a
# workflow switch stored per browser that the URL parameter workflowType=machine_learning sets: sparks
# tags its experiments and puts the parameter on every link it prints.
EXPERIMENT_KIND = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"
ML_VIEW = "workflowType=machine_learning"


def ui_base(uri: str) -> str:
    """Where a person browses `uri`: the server itself, or `mlflow ui` on port 5000 for a local store."""
    return uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"


def run_links(uri: str, experiment_id: str, run_id: str) -> dict[str, str]:
    """Direct links into the MLflow UI's model-training view of one run."""
    run = f"{ui_base(uri)}/#/experiments/{experiment_id}/runs/{run_id}"
    return {
        "run": f"{run}?{ML_VIEW}",
        "head trajectories": f"{run}/model-metrics?{ML_VIEW}",
        # heads and the reward (and loss) on one shared step axis: the run's own figure
        "heads with the reward, one step axis": f"{run}/artifacts/figures/trajectory.png?{ML_VIEW}",
        "artifacts": f"{run}/artifacts?{ML_VIEW}",
    }


def metric_key(name: str) -> str:
    """MLflow's form of a metric name: pass@1 -> pass_at_1 (MLflow refuses '@')."""
    return name.replace("@", "_at_")


class Tracker:
    """Logs to one MLflow run, or to `pending.jsonl` while the server is unreachable."""

    def __init__(self, uri: str | None, experiment: str, run_name: str, out_dir: Path):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        # config > MLFLOW_TRACKING_URI (set by `sparks up` for the worker's runs) > local store
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
        self.experiment, self.run_name, self.out_dir = experiment, run_name, Path(out_dir)
        self.pending = self.out_dir / "pending.jsonl"
        self.run_file = self.out_dir / "mlflow_run.json"
        self.client: Any = None  # MlflowClient once the run is open
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self.offline = False
        self._retry_at = 0.0
        self.last_error = ""
        # evaluation may log from its own thread while training logs (evaluation.concurrent)
        self._lock = threading.RLock()

    def start(self, params: dict, tags: dict) -> None:
        """Open (or resume) the run and log params and tags."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if not _reachable(self.uri):
            self._go_offline(f"MLflow at {self.uri} is unreachable")
        else:
            try:
                self._open()
            except Exception as e:  # any client error: keep training, keep the data
                self._go_offline(f"MLflow at {self.uri} failed ({type(e).__name__}: {e})")
        self._call("params", self._log_params, params)
        self._call("tags", self._set_tags, tags)

    def _open(self) -> None:
        import mlflow
        from mlflow.tracking import MlflowClient

        from sparks.log.store import ensure_store

        ensure_store(self.uri)  # a local store is created (or repaired) atomically, never in place
        self.client = MlflowClient(tracking_uri=self.uri)
        exp = self.client.get_experiment_by_name(self.experiment)
        if exp is None:
            artifacts = None
            if self.uri.startswith(
                "sqlite:"
            ):  # keep artifacts beside the local store, not in ./mlruns
                artifacts = (
                    (Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts")
                    .resolve()
                    .as_uri()
                )
            exp_id = self.client.create_experiment(self.experiment, artifact_location=artifacts)
        else:
            exp_id = exp.experiment_id
        self.experiment_id = exp_id
        if (exp.tags if exp is not None else {}).get(EXPERIMENT_KIND) != MODEL_TRAINING:
            self.client.set_experiment_tag(exp_id, EXPERIMENT_KIND, MODEL_TRAINING)
        if self.run_file.is_file():
            rid = json.loads(self.run_file.read_text())["run_id"]
            try:
                self.client.get_run(rid)
                self.run_id = rid
            except mlflow.exceptions.MlflowException:
                self.run_id = None
        if self.run_id is None:
            # a run created just before a kill (mlflow_run.json not yet written) is found again
            # by its output directory's tag, not created twice
            where = str(self.out_dir.resolve())
            quote = '"' if "'" in where else "'"
            found = self.client.search_runs(
                [exp_id],
                filter_string=f"tags.`{OUTPUT_DIR_TAG}` = {quote}{where}{quote}",
                max_results=1,
            )
            if found:
                self.run_id = found[0].info.run_id
            else:
                run = self.client.create_run(
                    exp_id, run_name=self.run_name, tags={OUTPUT_DIR_TAG: where}
                )
                self.run_id = run.info.run_id
            atomic_write_text(self.run_file, json.dumps({"run_id": self.run_id, "uri": self.uri}))

    def _go_offline(self, why: str) -> None:
        if not self.offline:
            print(
                f"[sparks] {why}; training goes on and metrics are kept in {self.pending} "
                f"until it answers again (or: sparks mlflow-sync {self.out_dir})",
                file=sys.stderr,
            )
        self.offline = True
        self._retry_at = time.monotonic() + RETRY_SECONDS

    def _reconnect(self) -> bool:
        """While offline, at most every RETRY_SECONDS: if the server answers again, send what was
        kept (without duplicates) and go back online."""
        if not self.offline or time.monotonic() < self._retry_at:
            return False
        self._retry_at = time.monotonic() + RETRY_SECONDS
        if not _reachable(self.uri):
            return False
        try:
            if self.client is None or self.run_id is None:
                self._open()
            sent = self._replay_pending()
        except Exception as e:  # still not answering properly: stay offline, try again later
            self.last_error = f"{type(e).__name__}: {str(e)[:200]}"
            return False
        self.offline = False
        print(
            f"[sparks] MLflow at {self.uri} answers again: {sent} kept records sent",
            file=sys.stderr,
        )
        return True

    def _replay_pending(self) -> int:
        """Send pending.jsonl's records in order; metrics already logged at a step are skipped.
        The file is then appended to pending.uploaded.jsonl and removed."""
        if not self.pending.is_file():
            return 0
        lines = [ln for ln in self.pending.read_text().splitlines() if ln.strip()]
        records = [json.loads(ln) for ln in lines]
        fns: dict[str, Callable[..., None]] = {
            "params": self._log_params,
            "tags": self._set_tags,
            "artifact": self._log_artifact,
            "table": self._log_table,
        }
        logged: dict[str, set[int]] = {}
        for r in records:
            if r["kind"] == "metrics":
                metrics, step = r["args"]
                for k in metrics:
                    if k not in logged:
                        history = self.client.get_metric_history(self.run_id, k)
                        logged[k] = {m.step for m in history}
                fresh = {k: v for k, v in metrics.items() if step not in logged[k]}
                if fresh:
                    self._log_metrics(fresh, step)
                    for k in fresh:
                        logged[k].add(step)
            else:
                fns[r["kind"]](*r["args"])
        done = self.pending.with_suffix(".uploaded.jsonl")
        with open(done, "a") as f:
            f.write("\n".join(lines) + "\n")
        self.pending.unlink()
        return len(records)

    def _call(self, kind: str, fn, *args) -> None:
        with self._lock:
            self._reconnect()
            if not self.offline:
                try:
                    fn(*args)
                    return
                except Exception as e:
                    if getattr(e, "error_code", None) == "INVALID_PARAMETER_VALUE":
                        raise  # our bad input, not an unreachable server: fail loudly
                    self._go_offline(
                        f"MLflow stopped answering ({type(e).__name__}: {str(e)[:120]})"
                    )
            with open(self.pending, "a") as f:
                f.write(json.dumps({"kind": kind, "args": args}, default=str) + "\n")

    def _log_params(self, params: dict) -> None:
        existing = self.client.get_run(self.run_id).data.params
        for k, v in params.items():
            v = str(v)[:6000]
            if k not in existing:
                self.client.log_param(self.run_id, k, v)

    def _set_tags(self, tags: dict) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v))

    def _log_metrics(self, metrics: dict, step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 900):
            self.client.log_batch(self.run_id, metrics=batch[i : i + 900])

    def _log_artifact(self, path: str, artifact_path: str | None) -> None:
        self.client.log_artifact(self.run_id, path, artifact_path)

    def _log_table(self, records: list[dict], name: str) -> None:
        """A table artifact in MLflow's table format, replaced (not appended to, as
        MlflowClient.log_table does) when logged again: a resumed or replayed run logs it once."""
        import tempfile

        import pandas as pd
        from mlflow.utils.mlflow_tags import MLFLOW_LOGGED_ARTIFACTS

        folder = str(Path(name).parent) if str(Path(name).parent) != "." else None
        with tempfile.TemporaryDirectory() as d:
            path = Path(d) / Path(name).name
            pd.DataFrame(records).to_json(path, orient="split", index=False, date_format="iso")
            self.client.log_artifact(self.run_id, str(path), folder)
        tags = self.client.get_run(self.run_id).data.tags
        logged = json.loads(tags.get(MLFLOW_LOGGED_ARTIFACTS, "[]"))
        if {"path": name, "type": "table"} not in logged:
            logged.append({"path": name, "type": "table"})
            self.client.set_tag(self.run_id, MLFLOW_LOGGED_ARTIFACTS, json.dumps(logged))

    def metric_steps(self, key: str) -> set[int]:
        """Steps at which `key` is already logged in this run (empty while offline)."""
        if self.offline or self.client is None:
            return set()
        try:
            return {m.step for m in self.client.get_metric_history(self.run_id, metric_key(key))}
        except Exception as e:
            self._go_offline(f"MLflow stopped answering ({type(e).__name__})")
            return set()

    def log_metrics(self, metrics: dict, step: int) -> None:
        """Log numeric metrics; '@' (pass@1) is not allowed in MLflow keys and becomes '_at_'."""
        metrics = {
            metric_key(k): v for k, v in metrics.items() if isinstance(v, (int, float)) and v == v
        }
        if metrics:
            self._call("metrics", self._log_metrics, metrics, step)

    def set_tags(self, tags: dict) -> None:
        self._call("tags", self._set_tags, tags)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self._call("artifact", self._log_artifact, str(path), artifact_path)

    def log_table(self, records: list[dict], name: str) -> None:
        self._call("table", self._log_table, records, name)

    def links(self) -> dict[str, str]:
        """Direct links to this run in the MLflow UI (empty while offline)."""
        if self.offline or self.run_id is None or self.experiment_id is None:
            return {}
        return run_links(self.uri, self.experiment_id, self.run_id)

    def end(self, status: str = "FINISHED") -> None:
        with self._lock:
            for _ in range(3 if self.offline else 0):  # a few last tries before the run ends
                self._retry_at = 0.0
                if self._reconnect():
                    break
                time.sleep(2)
            if self.offline:
                why = f" ({self.last_error})" if self.last_error else ""
                print(
                    f"[sparks] MLflow at {self.uri} is still unreachable{why}: what this run logged "
                    f"is kept in {self.pending}; send it with  sparks mlflow-sync {self.out_dir}",
                    file=sys.stderr,
                )
        if not self.offline and self.client is not None:
            try:
                self.client.set_terminated(self.run_id, status)
            except Exception as e:
                self._go_offline(f"MLflow stopped answering ({type(e).__name__})")


def upload_pending(out_dir: Path, uri: str | None = None) -> int:
    """Send what an offline run kept in `pending.jsonl` to MLflow (a broken local store is
    repaired first); returns the records sent. Every failure is one line; nothing kept is lost."""
    out_dir = Path(out_dir)
    pending = out_dir / "pending.jsonl"
    if not (out_dir / "run.json").is_file():
        raise FileNotFoundError(f"{out_dir} is not a sparks run directory (no run.json)")
    meta = json.loads((out_dir / "run.json").read_text())
    t = Tracker(
        uri or meta.get("uri"),
        meta.get("experiment", "sparks"),
        meta.get("name", out_dir.name),
        out_dir,
    )
    if not pending.is_file():
        from sparks.log.store import ensure_store

        repaired = ensure_store(t.uri) == "repaired"
        raise FileNotFoundError(
            f"{pending} not found: this run has nothing waiting for upload"
            + (" (its MLflow store was repaired)" if repaired else "")
        )
    try:
        t._open()  # also repairs a half-created local store
        return t._replay_pending()
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:200]
        raise UserError(
            f"MLflow at {t.uri} did not take {out_dir}'s records ({type(e).__name__}: {first}); "
            f"they stay in {pending}: start the server (sparks up) or fix the URI (--uri), "
            "then run sparks mlflow-sync again"
        ) from e

"""`sparks up` for real on loopback: Prefect server, MLflow server, worker, deployments; a run
triggered through the Prefect API as the UI's Run button does, read back through MLflow's REST API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http(method: str, url: str, body: dict | None = None, *, patience: float = 180) -> dict:
    """One API call. A GET that times out is asked again until `patience` runs out: on a
    2-core CI box a server answer can stall behind training and SQLite writes, and a poll
    must not fail on one slow answer. Other methods are sent once (they are not idempotent),
    except after a 503, which says the server did nothing."""
    req = urllib.request.Request(
        url,
        json.dumps(body).encode() if body is not None else None,
        {"Content-Type": "application/json"},
        method=method,
    )
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                answer = json.loads(r.read() or b"null")
            if (took := time.time() - t0) > 10:  # shows in CI's warning summary, for diagnosis
                warnings.warn(f"slow API answer: {method} {url} took {took:.0f}s", stacklevel=2)
            return answer
        except urllib.error.HTTPError as e:
            # 503: the server refused before doing anything (its database was busy: SQLite on a
            # 2-core box under training), which Prefect's own client retries too; anything else
            # is the server's answer
            if e.code != 503 or time.time() - t0 > patience:
                raise
            time.sleep(2)
        except (TimeoutError, urllib.error.URLError) as e:
            waited = time.time() - t0
            if method != "GET" or waited > patience:
                raise TimeoutError(f"{method} {url} gave no answer after {waited:.0f}s: {e}") from e
            time.sleep(2)


def _server_logs(stack, lines: int = 40) -> str:
    """The tail of each service's log, for a failure message."""
    out = []
    for log in sorted((stack["tmp"] / "state").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        out.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    return "\n".join(out)


def stack_env(tmp: Path) -> dict:
    """The environment of a stack of its own under `tmp`: free ports, its own state, Prefect
    home and MLflow store, no Prefect API of the caller's."""
    env = os.environ | {
        "SPARKS_PREFECT_PORT": str(_free_port()),
        "SPARKS_MLFLOW_PORT": str(_free_port()),
        "SPARKS_STATE_DIR": str(tmp / "state"),
        "PREFECT_HOME": str(tmp / "prefect"),
        "SPARKS_MLFLOW_DATA": str(tmp / "mlflow"),
        "SPARKS_TIMEZONE": "UTC",
    }
    env.pop("PREFECT_API_URL", None)
    return env


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stack")
    # the worker asks for scheduled runs every 2 s, not 10: each triggered run here starts
    # sooner (test time only; nothing else differs)
    env = stack_env(tmp) | {"PREFECT_WORKER_QUERY_SECONDS": "2"}
    up = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "up"],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    yield {
        "env": env,
        "tmp": tmp,
        "up": up.stdout,
        "prefect": f"http://127.0.0.1:{env['SPARKS_PREFECT_PORT']}/api",
        "mlflow": f"http://127.0.0.1:{env['SPARKS_MLFLOW_PORT']}",
    }
    subprocess.run(
        [sys.executable, "-m", "sparks.cli", "down"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _deployment(stack, name: str) -> dict:
    return _http("GET", f"{stack['prefect']}/deployments/name/{name}")


def _create_run(stack, deployment: str, parameters: dict) -> dict:
    """Create a flow run from a deployment, as the UI's Run button does; returns it at once."""
    dep = _deployment(stack, deployment)
    return _http(
        "POST",
        f"{stack['prefect']}/deployments/{dep['id']}/create_flow_run",
        {"parameters": parameters},
    )


def _run(stack, deployment: str, parameters: dict, timeout: float = 420) -> dict:
    """Create a flow run from a deployment (the UI's Run button) and wait for a final state."""
    run = _create_run(stack, deployment, parameters)
    t0 = time.time()
    while time.time() - t0 < timeout:
        fr = _http("GET", f"{stack['prefect']}/flow_runs/{run['id']}")
        if fr["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            return fr
        time.sleep(2)
    raise AssertionError(
        f"flow run {run['id']} still {fr['state']['type']} after {timeout}s\n{_server_logs(stack)}"
    )


def _config(tmp, **over) -> dict:
    cfg = {
        "name": "e2e",
        "output_dir": str(tmp / "run"),
        "world": {"n_train": 200, "n_test": 20, "n_pairs": 8},
        "stages": [
            {"method": "sft", "max_steps": 4, "save_steps": 2, "batch_size": 8},
            {
                "method": "grpo",
                "max_steps": 2,
                "save_steps": 2,
                "batch_size": 8,
                "num_generations": 4,
                "max_completion_length": 16,
            },
        ],
        "snapshot": {"steps": 2, "top_k": 30, "n_pairs": 8, "batch_size": 8},
        "evaluation": {"enabled": False},
        "tracking": {"experiment": "e2e"},
    }
    return cfg | over


def test_up_registers_every_deployment_with_a_nightly_cron(stack):
    assert (
        "Prefect UI: http://127.0.0.1:" in stack["up"]
        and "MLflow UI:  http://127.0.0.1:" in stack["up"]
    )
    for name in (
        "post-train/post-train",
        "evaluate-checkpoints/evaluate-checkpoints",
        "ablation-study/ablation-study",
        "analyze/analyze",
        "compare/compare",
        "nightly/nightly",
    ):
        dep = _deployment(stack, name)
        assert dep["work_pool_name"] == "sparks" and dep["parameter_openapi_schema"]["properties"]
    nightly = _deployment(stack, "nightly/nightly")
    crons = [s["schedule"].get("cron") for s in nightly["schedules"]]
    assert crons == ["0 2 * * *"] and nightly["schedules"][0]["active"]


def _listening(port: int) -> set[str]:
    """Local addresses the kernel has a listening TCP socket on for `port` (/proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.rsplit(":", 1)
            if int(p, 16) == port and state == "0A":  # 0A: LISTEN
                if len(addr) == 8:
                    found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    raw = b"".join(bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8))
                    found.add(socket.inet_ntop(socket.AF_INET6, raw))
    return found


def test_servers_listen_on_loopback_only(stack):
    """`up` binds 127.0.0.1 unless SPARKS_BIND_HOST says otherwise: nothing listens elsewhere."""
    for port in (stack["env"]["SPARKS_PREFECT_PORT"], stack["env"]["SPARKS_MLFLOW_PORT"]):
        assert _listening(int(port)) == {"127.0.0.1"}, port


def test_a_second_up_finds_everything_running(stack):
    again = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "up", "--no-deploy"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0
    assert again.stdout.count("already running") == 3


@pytest.fixture(scope="module")
def trained(stack) -> dict:
    """One post-train run triggered through the deployment, as the UI's Run button does."""
    try:
        fr = _run(stack, "post-train/post-train", {"config": _config(stack["tmp"])})
        assert fr["state"]["type"] == "COMPLETED", fr["state"]
        ml = stack["mlflow"] + "/api/2.0/mlflow"
        exp = _http("GET", f"{ml}/experiments/get-by-name?experiment_name=e2e")["experiment"][
            "experiment_id"
        ]
        runs = _http("POST", f"{ml}/runs/search", {"experiment_ids": [exp]})["runs"]
    except (AssertionError, TimeoutError) as e:
        raise AssertionError(f"{e}\n{_server_logs(stack)}") from e
    return {"experiment": exp, "run": runs[0]["info"]["run_id"], "api": ml, "flow_run": fr["id"]}


def test_triggered_post_train_run_logs_rewards_and_heads_at_the_same_steps(trained):
    def steps(key):
        q = f"run_id={trained['run']}&metric_key={urllib.parse.quote(key)}"
        h = _http("GET", f"{trained['api']}/metrics/get-history?{q}")
        return sorted(m["step"] for m in h.get("metrics", []))

    assert steps("reward") == [5, 6]
    assert steps("head/L0H0") == steps("circuit/heads") == [0, 2, 4, 6]
    assert set(steps("reward")) & set(steps("head/L3H3")) == {6}  # the GRPO save: both series


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def test_the_uis_show_the_deployment_and_the_head_trajectories(stack, trained):
    from playwright.sync_api import sync_playwright

    shots = Path(__file__).resolve().parents[2] / "test-artifacts"
    shots.mkdir(exist_ok=True)
    dep = _deployment(stack, "post-train/post-train")
    prefect_ui = stack["prefect"].removesuffix("/api")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{prefect_ui}/deployments/deployment/{dep['id']}")
        page.get_by_text("post-train").first.wait_for(timeout=90_000)
        page.get_by_role("button", name="Run").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "prefect-deployment.png"), full_page=True)
        page.goto(f"{stack['mlflow']}/#/experiments/{trained['experiment']}/runs/{trained['run']}")
        page.get_by_text("head/L0H0").first.wait_for(timeout=90_000)
        page.get_by_text("circuit/emergent").first.wait_for(timeout=30_000)
        page.screenshot(path=str(shots / "mlflow-run.png"), full_page=True)
        # sparks' own lines (snapshots, stages) in the flow run's Logs tab
        page.goto(f"{prefect_ui}/runs/flow-run/{trained['flow_run']}")
        page.get_by_text("snapshot step 2:").first.wait_for(timeout=90_000)
        page.screenshot(path=str(shots / "prefect-flow-run-logs.png"), full_page=True)
        browser.close()
    assert (shots / "prefect-deployment.png").stat().st_size > 20_000
    assert (shots / "mlflow-run.png").stat().st_size > 20_000


def test_compare_runs_from_its_form_and_mlflow_opens_its_report_in_the_training_view(
    stack, trained
):
    """The compare deployment, triggered through the API with its form's parameters; the links
    it returns open MLflow's model-training view (not the GenAI one) on the report."""
    from playwright.sync_api import sync_playwright

    dep = _deployment(stack, "compare/compare")
    form = dep["parameter_openapi_schema"]["definitions"]["CompareConfig"]["properties"]
    assert {"runs", "base", "stability", "think", "output_dir"} <= set(form)
    params = {
        "config": {
            "name": "e2e-compare",
            "runs": [str(stack["tmp"] / "run")],
            "output_dir": str(stack["tmp"] / "compare"),
            "tracking": {"experiment": "e2e"},
        }
    }
    fr = _run(stack, "compare/compare", params, timeout=300)
    assert fr["state"]["type"] == "COMPLETED", f"{fr['state']}\n{_server_logs(stack)}"
    report = stack["tmp"] / "compare" / "report" / "report.html"
    assert report.is_file()
    summary = json.loads((report.parent / "summary.json").read_text())
    assert summary["series"] == ["e2e.sft", "e2e.grpo"]
    ml = stack["mlflow"] + "/api/2.0/mlflow"
    runs = _http(
        "POST",
        f"{ml}/runs/search",
        {"experiment_ids": [trained["experiment"]], "filter": "tags.`sparks.kind` = 'compare'"},
    )["runs"]
    assert len(runs) == 1
    cid = runs[0]["info"]["run_id"]
    tags = {t["key"]: t["value"] for t in runs[0]["data"]["tags"]}
    assert tags["sparks.compares"] == trained["run"]
    exp = _http("GET", f"{ml}/experiments/get?experiment_id={trained['experiment']}")
    kinds = {t["key"]: t["value"] for t in exp["experiment"].get("tags", [])}
    assert kinds["mlflow.experimentKind"] == "custom_model_development"
    link = (
        f"{stack['mlflow']}/#/experiments/{trained['experiment']}/runs/{cid}"
        "/artifacts/report/report.html?workflowType=machine_learning"
    )
    shots = Path(__file__).resolve().parents[2] / "test-artifacts"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(link)
        page.get_by_text("report.html").first.wait_for(timeout=90_000)
        frame = page.frame_locator("iframe").first
        frame.get_by_text("1. Emergent heads against the base").wait_for(timeout=60_000)
        page.get_by_text("Model metrics").first.wait_for(timeout=30_000)  # the training view's tab
        page.screenshot(path=str(shots / "mlflow-compare-report.png"), full_page=True)
        genai = page.get_by_text("Evaluations", exact=True).count()
        browser.close()
    assert genai == 0, "MLflow showed its GenAI view"


def test_a_malformed_parameter_is_refused_with_a_readable_message(stack):
    dep = _deployment(stack, "post-train/post-train")
    bad = _config(stack["tmp"], stages=[{"method": "sft", "learning_rate": -1}])
    with pytest.raises(urllib.error.HTTPError) as e:
        _http(
            "POST",
            f"{stack['prefect']}/deployments/{dep['id']}/create_flow_run",
            {"parameters": {"config": bad}},
        )
    body = e.value.read().decode()
    assert e.value.code in (409, 422) and "learning_rate" in body


# Form parameters as the UI sends them, refused by the server before any run starts (part of the
# bad-input table in tests/reliability/test_bad_inputs.py).
FORM_CASES = [
    ("post-train/post-train", {"config": {"stagez": []}}, "stagez"),
    ("post-train/post-train", {"config": {"stages": [{"method": "ppo"}]}}, "method"),
    ("post-train/post-train", {"config": {"snapshot": {"steps": 0}}}, "steps"),
    ("compare/compare", {"config": {"runs": ["runs/x"], "stability": 2}}, "stability"),
    ("compare/compare", {"config": {"runs": "runs/x"}}, "runs"),
    ("ablation-study/ablation-study", {"config": {"heads": ["L0H0"]}}, "model"),
    ("analyze/analyze", {"config": {"checkpoints": [], "pairs": "p.jsonl"}}, "checkpoints"),
]


@pytest.mark.parametrize(
    "deployment, parameters, field",
    FORM_CASES,
    ids=[f"{d.split('/')[0]}-{f}" for d, _, f in FORM_CASES],
)
def test_malformed_form_parameters_are_refused_naming_the_field(
    stack, deployment, parameters, field
):
    dep = _deployment(stack, deployment)
    before = _http("POST", f"{stack['prefect']}/flow_runs/count", {})
    with pytest.raises(urllib.error.HTTPError) as e:
        _http(
            "POST",
            f"{stack['prefect']}/deployments/{dep['id']}/create_flow_run",
            {"parameters": parameters},
        )
    body = e.value.read().decode()
    assert e.value.code in (409, 422) and field in body, body[:500]
    assert _http("POST", f"{stack['prefect']}/flow_runs/count", {}) == before, "a run was created"


def test_a_failing_flow_run_is_marked_failed_with_its_error(stack):
    cfg = _config(
        stack["tmp"],
        model={"path": str(stack["tmp"] / "no-such-model")},
        output_dir=str(stack["tmp"] / "bad"),
    )
    fr = _run(stack, "post-train/post-train", {"config": cfg}, timeout=240)
    assert fr["state"]["type"] == "FAILED"
    assert "does not exist" in fr["state"]["message"]


def test_a_run_cancelled_from_the_ui_ends_its_mlflow_run_killed(stack):
    """The UI's Cancel (the flow run set to Cancelling through the API it uses) while the run
    trains: the worker stops the flow-run process, whose run ends in MLflow as KILLED with the
    reason, summary.json says which saves were done, and the writer lock is released."""
    out = stack["tmp"] / "cancel"
    params = {
        "config": _config(stack["tmp"], name="cancel", output_dir=str(out))
        | {"tracking": {"experiment": "e2e-cancel"}}
    }
    run = _create_run(stack, "post-train/post-train", params)
    first = out / "stage0-sft" / "checkpoint-2" / "circuit" / "snapshot.json"
    deadline = time.time() + 300
    while not first.is_file():
        assert time.time() < deadline, f"no first save\n{_server_logs(stack)}"
        time.sleep(0.5)
    _http(
        "POST",
        f"{stack['prefect']}/flow_runs/{run['id']}/set_state",
        {"state": {"type": "CANCELLING", "name": "Cancelling"}, "force": True},
    )
    t0 = time.time()
    while (state := _http("GET", f"{stack['prefect']}/flow_runs/{run['id']}")["state"])[
        "type"
    ] != "CANCELLED":
        assert time.time() - t0 < 180, f"still {state}\n{_server_logs(stack)}"
        time.sleep(1)
    run_id = json.loads((out / "mlflow_run.json").read_text())["run_id"]
    got = _http("GET", f"{stack['mlflow']}/api/2.0/mlflow/runs/get?run_id={run_id}")["run"]
    tags = {t["key"]: t["value"] for t in got["data"].get("tags", [])}
    assert got["info"]["status"] == "KILLED", (got["info"], _server_logs(stack))
    assert tags["sparks.end"] == "KILLED" and tags["sparks.end_reason"], tags
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "KILLED" and summary["saves"][:2] == [0, 2], summary
    assert not list((out / ".writers").glob("*.json"))  # its writer lock released


def test_prefect_server_lost_mid_run_the_work_is_kept_and_a_rerun_finishes(stack):
    """The Prefect server is killed while a post-train run trains, and started again by `up`.
    Whatever state the run ends in, nothing waits forever, what it wrote stays, and running the
    deployment again with the same parameters finishes the run, resuming."""
    out = stack["tmp"] / "outage"
    params = {
        "config": _config(stack["tmp"], name="outage", output_dir=str(out))
        | {"tracking": {"experiment": "e2e-outage"}}
    }
    run = _create_run(stack, "post-train/post-train", params)
    base = out / "base" / "circuit" / "snapshot.json"
    deadline = time.time() + 300
    while not base.is_file():
        assert time.time() < deadline, f"no base snapshot\n{_server_logs(stack)}"
        time.sleep(0.5)
    server = int((stack["tmp"] / "state" / "prefect-server.pid").read_text())
    os.killpg(server, signal.SIGKILL)  # a crash: no shutdown
    time.sleep(10)  # training goes on without the server meanwhile
    up = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "up", "--no-deploy"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    t0 = time.time()
    while True:  # the run ends one way or another: no state waits forever
        state = _http("GET", f"{stack['prefect']}/flow_runs/{run['id']}")["state"]["type"]
        if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
            break
        assert time.time() - t0 < 420, f"run still {state}\n{_server_logs(stack)}"
        time.sleep(2)
    print(f"flow run after the Prefect server came back: {state}")
    kept = base.stat().st_mtime_ns
    if state != "COMPLETED":
        again = _run(stack, "post-train/post-train", params)
        assert again["state"]["type"] == "COMPLETED", again["state"]
        assert base.stat().st_mtime_ns == kept, "the base snapshot was redone, not kept"
    import pandas as pd

    assert set(pd.read_parquet(out / "ledger.parquet").step) == {0, 2, 4, 6}


def test_two_triggered_nights_are_two_runs_and_the_second_is_compared_with_the_first(stack):
    """The nightly deployment triggered twice, as its schedule would on two nights (the dates
    given): two run directories, two MLflow runs, and the second night compared with the first
    (night.json, night/* metrics in its MLflow run, a compare report)."""
    import yaml

    cfg = _config(stack["tmp"], name="night", evaluation={"benchmarks": ["world"], "every": 1,
                  "n": 1, "max_tokens": 8, "limit": 4, "backend": "transformers"})  # fmt: skip
    cfg["stages"] = [cfg["stages"][0] | {"max_steps": 2, "save_steps": 2},
                     cfg["stages"][1] | {"max_steps": 1, "save_steps": 1}]  # fmt: skip
    cfg["tracking"] = {"experiment": "e2e-nights"}
    path = stack["tmp"] / "night.yaml"
    path.write_text(yaml.safe_dump(cfg))
    root = stack["tmp"] / "nightly"
    for night in ("2026-12-03", "2026-12-04"):
        params = {"config_path": str(path), "output_root": str(root), "night": night}
        fr = _run(stack, "nightly/nightly", params)
        assert fr["state"]["type"] == "COMPLETED", f"{fr['state']}\n{_server_logs(stack)}"
    assert sorted(p.name for p in root.iterdir()) == ["2026-12-03", "2026-12-04"]
    change = json.loads((root / "2026-12-04" / "night.json").read_text())
    assert change["previous"] == "2026-12-03" and change["step"] == 3
    assert {"heads_gained", "heads_lost", "reward_delta"} <= set(change)
    assert set(change["pass@1_delta"]) == {"world"}
    assert (root / "2026-12-04" / "compare" / "report" / "report.html").is_file()
    ml = stack["mlflow"] + "/api/2.0/mlflow"
    exp = _http("GET", f"{ml}/experiments/get-by-name?experiment_name=e2e-nights")["experiment"]
    runs = _http("POST", f"{ml}/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    by_name = {r["info"]["run_name"]: r for r in runs}
    assert {"night-2026-12-03", "night-2026-12-04"} <= set(by_name), sorted(by_name)
    two = by_name["night-2026-12-04"]
    metrics = {m["key"]: m["value"] for m in two["data"]["metrics"]}
    tags = {t["key"]: t["value"] for t in two["data"]["tags"]}
    assert two["info"]["status"] == "FINISHED" and tags["sparks.previous_night"] == "2026-12-03"
    assert metrics["night/heads_gained"] == len(change["heads_gained"])
    assert metrics["night/world/pass_at_1_delta"] == change["pass@1_delta"]["world"]


def test_the_prefect_server_logged_no_database_lock_errors(stack, trained):
    """After every run of this module (the worker polling all along), Prefect's SQLite database
    gave no `database is locked` (sparks/stack/prefect_server.py; 20 tracebacks before it)."""
    log = (stack["tmp"] / "state" / "prefect-server.log").read_text(errors="replace")
    assert "Check out the dashboard at" in log, log[-2000:]  # the server's own log
    assert log.count("database is locked") == 0, log[-4000:]


def test_down_stops_only_what_up_started(stack):
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True
    )
    pids = [int(p.read_text()) for p in (stack["tmp"] / "state").glob("*.pid")]
    assert len(pids) == 3
    down = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "down"],
        env=stack["env"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert down.returncode == 0 and down.stdout.count("stopped") == 3
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert bystander.poll() is None, "an unrelated process is left alone"
    os.killpg(bystander.pid, signal.SIGTERM)
    again = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "down"],
        env=stack["env"],
        capture_output=True,
        text=True,
    )
    assert "nothing to stop" in again.stdout

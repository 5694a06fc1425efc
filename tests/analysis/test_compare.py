"""`sparks compare` on real runs: the session's SFT-then-GRPO run (its two stages are two series), a
checkpoint set (an edited model, snapshotted), and think on/off of the world model. Every number of
the report is recomputed here from the ledger or the snapshots it comes from."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sparks.circuits.snapshot import read_snapshot
from sparks.config import CompareConfig

THRESHOLD = 0.8


@pytest.fixture(scope="module")
def edited_checkpoint(trained_run, tmp_path_factory):
    """A second model with the same base: the SFT model with two heads halved, snapshotted on the
    run's own pairs and settings (a checkpoint set of one)."""
    from sparks.circuits import snapshot_checkpoint
    from sparks.studies.interventions import write_scaled_checkpoint

    out = Path(trained_run.cfg.output_dir)
    d = tmp_path_factory.mktemp("edited") / "sft-halved"
    write_scaled_checkpoint(out / "stage0-sft" / "final", ["L0H0", "L1H1"], 0.5, d)
    s = trained_run.cfg.snapshot
    snapshot_checkpoint(
        d,
        out / "pairs.jsonl",
        d / "circuit",
        s,
        progress=False,
    )
    return d


@pytest.fixture(scope="module")
def compared(trained_run, edited_checkpoint, world, tmp_path_factory, prefect_server):
    """The `compare` flow over the run, the checkpoint set and think on/off."""
    from sparks.flows.compare import compare

    out = Path(trained_run.cfg.output_dir)
    tasks = str(world.tasks_path("test"))
    cfg = CompareConfig.model_validate(
        {
            "name": "t-compare",
            "runs": [str(out), str(edited_checkpoint)],
            "base": str(out / "base"),
            "output_dir": str(tmp_path_factory.mktemp("compare") / "cmp"),
            "think": {
                "model": str(world.model_dir),
                "pairs": {"mode": "numbers", "sources": [tasks], "n": 8},
                "snapshot": {"steps": 2, "top_k": 40, "n_pairs": 8, "batch_size": 8},
                "evaluation": {
                    "benchmarks": ["world"],
                    "sources": {"world": tasks},
                    "limit": 6,
                    "n": 2,
                    "max_tokens": 24,
                    "backend": "transformers",
                },
            },
            "tracking": {"mlflow_uri": trained_run.uri, "experiment": "flow-test"},
        }
    )
    result = compare(cfg)
    report = Path(result["report"]).parent
    tables = {p.stem: pd.read_parquet(p) for p in (report / "tables").glob("*.parquet")}
    ledger = pd.read_parquet(out / "ledger.parquet")
    return result, report, tables, ledger, trained_run


def _in(ledger: pd.DataFrame, step: int, stable: bool = False) -> set[str]:
    rows = ledger[(ledger.step == step) & ledger.in_circuit]
    if stable:
        rows = rows[rows.stability >= THRESHOLD]
    return set(rows["head"])


def test_1_emergent_table_matches_the_ledger_and_snapshots(compared, edited_checkpoint):
    result, _, t, ledger, _ = compared
    e = t["emergent"].set_index("model")
    base, base_stable = _in(ledger, 0), _in(ledger, 0, True)
    assert e.loc["base", "heads"] == len(base) and e.loc["base", "heads_stable"] == len(base_stable)
    for name, step in (("t.sft", 4), ("t.grpo", 8)):
        final, final_stable = _in(ledger, step), _in(ledger, step, True)
        assert e.loc[name, "heads"] == len(final)
        assert e.loc[name, "gained"] == len(final - base)
        assert e.loc[name, "gained_stable"] == len(final_stable - base)
        assert e.loc[name, "lost"] == len(base - final)
        assert e.loc[name, "lost_stable"] == len(base_stable - final)
    snap = read_snapshot(edited_checkpoint / "circuit")
    assert e.loc["sft-halved", "heads"] == len(snap.heads)
    assert e.loc["sft-halved", "gained"] == len(set(snap.heads) - base)
    assert {"think on", "think off"} <= set(e.index)
    assert e["heads_stability"].between(0, 1).all()  # every count comes with its stability


def test_2_activation_frequency_is_the_share_of_saves_in_the_circuit(compared):
    _, report, t, ledger, _ = compared
    f = t["frequency"]
    for name, saves in (("t.sft", [2, 4]), ("t.grpo", [5, 6, 7, 8])):
        rows = ledger[ledger.step.isin(saves)]
        expected = rows.groupby("head")["in_circuit"].mean()
        got = f[f.series == name].set_index("head")["frequency"]
        pd.testing.assert_series_equal(
            got.sort_index(), expected.sort_index().astype(float), check_names=False
        )
    assert (report / "figures" / "frequency.png").stat().st_size > 5_000


def test_3_cohorts_count_who_entered_when_and_who_is_still_in(compared):
    _, _, t, ledger, _ = compared
    steps = [4, 5, 6, 7, 8]  # the GRPO series starts from the last SFT save
    member = {s: _in(ledger, s) for s in steps}
    first = {}
    for s in steps:
        for h in member[s]:
            first.setdefault(h, s)
    c = t["cohorts"][t["cohorts"].series == "t.grpo"]
    assert sum(c.drop_duplicates("cohort")["size"]) == len(first)
    for row in c.itertuples():
        heads = {h for h, s in first.items() if s == row.cohort}
        assert row.size == len(heads)
        assert row.still_in == len(heads & member[row.step])
        now = ledger[(ledger.step == row.step) & ledger["head"].isin(heads & member[row.step])]
        if len(now):  # every count comes with its stability
            assert row.stability == pytest.approx(now.stability.mean())


def test_4_e_scores_follow_the_edge_shares_of_the_snapshots(compared):
    _, _, t, _, run = compared
    out = Path(run.cfg.output_dir)

    def share(path):
        snap = read_snapshot(path)
        edges = snap.edge_scores.double().abs()
        per_head = edges.sum(1)[snap.graph.head_index.flatten()] / edges.sum()
        return per_head.numpy()

    pre = share(out / "base" / "circuit")
    post = share(out / "stage0-sft" / "checkpoint-4" / "circuit")
    expected = (post - pre) / (post + pre + 1e-6)
    e = t["e_scores"][t["e_scores"]["between"] == "base -> t.sft"].sort_values(["layer", "index"])
    np.testing.assert_allclose(e["E"].to_numpy(), expected, rtol=1e-6, atol=1e-9)
    assert e["E"].between(-1, 1).all()
    assert set(t["e_scores"]["between"]) == {
        "base -> t.sft",
        "base -> t.grpo",
        "base -> sft-halved",
        "think on -> off",
    }


def test_5_grpo_dynamics_reward_and_churn_per_save(compared):
    result, _, t, ledger, run = compared
    d = t["dynamics"][t["dynamics"].series == "t.grpo"].set_index("step")
    assert list(d.index) == [5, 6, 7, 8]
    # rewards read back from MLflow (the report reads the trainer's state on disk)
    logged = {
        m.step: m.value for m in run.client.get_metric_history(run.summary["run_id"], "reward")
    }
    for step in d.index:
        assert d.loc[step, "reward"] == pytest.approx(logged[step], rel=1e-6)
        prev = {5: 4, 6: 5, 7: 6, 8: 7}[step]
        entered = _in(ledger, step) - _in(ledger, prev)
        left = _in(ledger, prev) - _in(ledger, step)
        assert d.loc[step, "activated"] == len(entered) and d.loc[step, "pruned"] == len(left)
        assert d.loc[step, "heads"] == len(_in(ledger, step))
    c = t["correlations"].set_index(["series", "x"])
    for x in ("churn", "heads"):
        got = c.loc[("t.grpo", x)]
        assert got["n"] == 4
        if d[x].std() > 0 and d["reward"].std() > 0:
            assert got["r"] == pytest.approx(np.corrcoef(d[x], d["reward"])[0, 1])
            assert got["ci_low"] <= got["ci_high"]
        else:  # a constant series has no correlation: reported as undefined, not as 0
            assert np.isnan(got["r"])
    m = t["membership_vs_reward"]
    ever = set().union(*(_in(ledger, s) for s in (4, 5, 6, 7, 8)))
    assert set(m[m.series == "t.grpo"]["head"]) == ever


def test_6_retention_and_churn_recomputed_from_the_ledger(compared):
    result, _, t, ledger, _ = compared
    r = t["retention"].set_index("series")
    for name, steps in (("t.sft", [0, 2, 4]), ("t.grpo", [4, 5, 6, 7, 8])):
        entered, churn = set(), []
        for prev, step in zip(steps, steps[1:], strict=False):
            came = _in(ledger, step) - _in(ledger, prev)
            went = _in(ledger, prev) - _in(ledger, step)
            entered |= came
            churn.append(len(came) + len(went))
        kept = entered & _in(ledger, steps[-1])
        if entered:
            assert r.loc[name, "retention"] == pytest.approx(len(kept) / len(entered))
            assert result["retention"][name] == pytest.approx(len(kept) / len(entered), abs=1e-4)
        else:
            assert np.isnan(r.loc[name, "retention"])
        assert r.loc[name, "churn_per_save"] == pytest.approx(np.mean(churn))
        assert r.loc[name, "entered"] == len(entered)


def test_7_think_on_and_off_on_the_same_problems(compared):
    _, report, t, _, _ = compared
    think = report.parent / "think"
    on = [json.loads(line) for line in (think / "on" / "pairs.jsonl").read_text().splitlines()]
    off = [json.loads(line) for line in (think / "off" / "pairs.jsonl").read_text().splitlines()]
    assert [p["problem_id"] for p in on] == [p["problem_id"] for p in off]
    assert all("<think>\n\n</think>" in p["clean"] for p in off)
    assert not any("<think>" in p["clean"] for p in on)
    a = set(read_snapshot(think / "on" / "circuit").heads)
    b = set(read_snapshot(think / "off" / "circuit").heads)
    sets = t["think_sets"].set_index("set")
    assert sets.loc["compensatory (off only)", "heads"] == len(b - a)
    assert sets.loc["on only", "heads"] == len(a - b)
    assert sets.loc["shared", "heads"] == len(a & b)
    members = sets.loc["compensatory (off only)", "members"]
    assert set(members.split(",") if members else []) == b - a
    ev = t["think_eval"]
    assert set(ev.variant) == {"thinking on", "thinking off"}
    for mode in ("on", "off"):
        m = json.loads((think / mode / "eval" / "metrics.json").read_text())["world"]
        row = ev[ev.variant == f"thinking {mode}"].iloc[0]
        assert row["pass@1"] == m["pass@1"]
        assert row["pass@1_ci_low"] <= row["pass@1"] <= row["pass@1_ci_high"]


def test_8_a_head_set_of_the_report_feeds_the_ablation_flow(compared, world, tmp_path):
    from sparks.config import AblationConfig
    from sparks.flows.ablation import ablation_study

    _, report, _, ledger, run = compared
    sets = json.loads((report / "head_sets.json").read_text())
    name = "t.sft/emergent-all"
    assert sets[name]["heads"] == sorted(
        _in(ledger, 4) - _in(ledger, 0), key=lambda h: tuple(map(int, h[1:].split("H")))
    )
    params = sets[name]["ablation"]
    assert params["heads_from"] == str(report.resolve()) and params["head_set"] == name
    assert params["model"] == str(Path(run.cfg.output_dir) / "stage0-sft" / "final")
    cfg = AblationConfig.model_validate(
        params
        | {
            "scales": [0.0],
            "output_dir": str(tmp_path / "abl"),
            "evaluation": {
                "benchmarks": ["world"],
                "sources": {"world": str(world.tasks_path("test"))},
                "limit": 3,
                "n": 1,
                "max_tokens": 8,
                "backend": "transformers",
            },
            "tracking": {"mlflow_uri": run.uri, "experiment": "flow-test"},
        }
    )
    done = ablation_study(cfg)
    assert done["heads"] == sets[name]["heads"]
    assert set(done["results"]) == {"baseline", "scale_0"}
    edited = json.loads(
        (tmp_path / "abl" / "scale_0" / "model" / "sparks_intervention.json").read_text()
    )
    assert edited["heads"] == sets[name]["heads"]
    bad = cfg.model_copy(update={"head_set": "no-such-set", "output_dir": str(tmp_path / "bad")})
    with pytest.raises(ValueError, match="no head set 'no-such-set'; set head_set to one of"):
        ablation_study(bad)
    assert not (tmp_path / "bad").exists()


def test_the_report_is_a_run_of_its_own_in_mlflow_linked_both_ways(compared):
    result, _, _, _, run = compared
    client = run.client
    mine = client.get_run(result["run_id"])
    assert mine.data.tags["sparks.kind"] == "compare"
    assert mine.data.tags["sparks.compares"] == run.summary["run_id"]
    assert client.get_run(run.summary["run_id"]).data.tags["sparks.compared_in"] == result["run_id"]
    arts = {a.path for a in client.list_artifacts(result["run_id"], "report")}
    assert {"report/report.html", "report/head_sets.json", "report/figures"} <= arts
    exp = client.get_experiment(mine.info.experiment_id)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert result["links"]["report"].endswith(
        f"/runs/{result['run_id']}/artifacts/report/report.html?workflowType=machine_learning"
    )
    assert "head trajectories" in mine.data.tags["mlflow.note.content"]


def test_the_report_opens_in_a_browser_with_every_figure_visible(compared):
    from playwright.sync_api import sync_playwright

    from tests.stack.test_stack import CHROMIUM_FLAGS

    _, report, _, _, _ = compared
    figures = sorted((report / "figures").glob("*.png"))
    assert len(figures) >= 8  # frequency, cohorts, E, dynamics, membership, retention, think x2
    shots = Path(__file__).resolve().parents[2] / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        page.goto((report / "report.html").resolve().as_uri())
        page.get_by_text("8. From finding to intervention").wait_for(timeout=30_000)
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, w: i.naturalWidth,"
            " h: i.getBoundingClientRect().height}))"
        )
        page.screenshot(path=str(shots / "compare-report.png"), full_page=True)
        browser.close()
    assert len(images) == len(figures)
    assert all(i["w"] > 100 and i["h"] > 50 for i in images), images


def test_cli_compares_a_run_directory_and_prints_retention_and_churn(compared, tmp_path):
    _, _, _, _, run = compared
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sparks.cli",
            "compare",
            run.cfg.output_dir,
            "--out",
            str(tmp_path / "c"),
            "--mlflow-uri",
            run.uri,
            "--experiment",
            "cli-compare",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "t.sft: retention" in done.stdout and "t.grpo: retention" in done.stdout
    assert f"report: {tmp_path / 'c' / 'report' / 'report.html'}" in done.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        (["/no/such/run"], "/no/such/run does not exist: pass a run directory"),
        (["{ckpt}"], "checkpoints need a common base to compare against: pass --base"),
        ([], "nothing to compare"),
    ],
)
def test_cli_bad_sources_fail_in_one_line(args, expected, edited_checkpoint, tmp_path):
    args = [a.format(ckpt=edited_checkpoint) for a in args]
    done = subprocess.run(
        [sys.executable, "-m", "sparks.cli", "compare", *args, "--out", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "c").exists()


def test_an_mlflow_run_compares_like_its_run_directory(compared, monkeypatch):
    """mlflow:RUN_ID reads the run back from its tracking server: the same series and numbers."""
    from sparks.analysis.heads import retention
    from sparks.analysis.series import load_sources

    _, _, _, _, run = compared
    monkeypatch.setenv("MLFLOW_TRACKING_URI", run.uri)
    from_disk = load_sources([run.cfg.output_dir])
    from_mlflow = load_sources([f"mlflow:{run.summary['run_id']}"])
    assert [s.name for s in from_mlflow.series] == [s.name for s in from_disk.series]
    for a, b in zip(from_disk.series, from_mlflow.series, strict=True):
        assert a.saves == b.saves and a.start == b.start
        assert json.dumps(retention(a)) == json.dumps(retention(b))  # NaN compares as NaN
        pd.testing.assert_series_equal(
            a.rewards.astype(float), b.rewards.astype(float), check_names=False, rtol=1e-6
        )
        assert {s: m["world"]["pass@1"] for s, m in a.evals.items()} == pytest.approx(
            {s: m["world"]["pass@1"] for s, m in b.evals.items()}
        )
    with pytest.raises(ValueError, match="mlflow:nope: no such run"):
        load_sources(["mlflow:nope"])

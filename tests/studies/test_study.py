"""A study read problem by problem: difficulty buckets, pass@1 per bucket with intervals, flips
with the exact paired test, failure modes, and the sample viewer in a real browser.

The tables are per-sample tables as `grade` writes them, from hand-written responses: a baseline
that solves the easy problems and a variant that loses some to a loop and an arithmetic slip (the
world's tiny models solve too few problems for a flip to be certain)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sparks.evaluate.generate import Completion
from sparks.evaluate.metrics import grade
from sparks.studies import study

PROBLEMS = {
    "world": [
        {"id": f"w{i}", "problem": f"Compute {i} + {i}.", "answer": str(2 * i), "level": 1 + i % 2}
        for i in range(6)
    ],
    "amc23": [
        {"id": f"a{i}", "problem": f"Compute {i} * 3.", "answer": str(3 * i)} for i in range(4)
    ],
}


def _solve(p: dict) -> str:
    expr = p["problem"].removeprefix("Compute ").removesuffix(".")
    return f"{expr} = {p['answer']}, so \\boxed{{{p['answer']}}}."


def _slip(p: dict) -> str:
    return f"{p['problem']} Then 46 + 59 = 172, so \\boxed{{{int(p['answer']) + 1}}}."


LOOP = "Wait, let me add the numbers again carefully. " * 6


def _tables(respond) -> dict[str, pd.DataFrame]:
    """Two samples per problem; `respond(problem, sample)` gives the text (None: truncated loop)."""
    out = {}
    for bench, probs in PROBLEMS.items():
        rows = []
        for p in probs:
            row = []
            for j in range(2):
                text = respond(p, j)
                row.append(Completion(text or LOOP, 12, text is None))
            rows.append(row)
        out[bench] = grade(probs, rows)
    return out


def _baseline(p, j):  # solves world w0-w3 and amc a0-a1; the rest half the time or never
    i = int(p["id"][1:])
    return _solve(p) if i < (4 if p["id"][0] == "w" else 2) or (i == 4 and j == 0) else _slip(p)


def _variant(p, j):  # loses w0 and w1 (a loop, a slip), gains a3
    i, bench = int(p["id"][1:]), p["id"][0]
    if bench == "w" and i == 0:
        return None
    if bench == "w" and i == 1:
        return _slip(p)
    if bench == "a" and i == 3:
        return _solve(p)
    return _baseline(p, j)


@pytest.fixture(scope="module")
def variants():
    return {"baseline": _tables(_baseline), "scale_0": _tables(_variant)}


def test_difficulty_reads_levels_then_the_baselines_pass_rate_then_the_benchmark(variants):
    buckets = study.difficulty(PROBLEMS, variants["baseline"])
    world = buckets[buckets.benchmark == "world"]
    assert world.bucket.tolist() == ["level 1", "level 2"] * 3 and set(world.rule) == {"level"}
    amc = buckets[buckets.benchmark == "amc23"].set_index("problem_id")
    assert amc.bucket.to_dict() == {"a0": "easy", "a1": "easy", "a2": "hard", "a3": "hard"}
    one_sample = {"amc23": variants["baseline"]["amc23"].query("sample == 0")}
    assert set(study.difficulty({"amc23": PROBLEMS["amc23"]}, one_sample).bucket) == {"amc23"}
    mixed = [{"id": "x", "problem": "p", "answer": "1", "level": "Level 4"}]
    measured = grade(mixed, [[Completion("\\boxed{1}", 3, False)]])
    assert study.difficulty({"math": mixed}, {"math": measured}).bucket.tolist() == ["level 4"]


def test_problems_a_variant_did_not_measure_are_listed_with_why_and_never_bucketed(variants):
    # the baseline skipped a3 (its prompt too long) and the variant never got to a2 either
    base = {
        **variants["baseline"],
        "amc23": variants["baseline"]["amc23"].query("problem_id != 'a3'"),
    }
    var = {**variants["scale_0"], "amc23": variants["scale_0"]["amc23"].query("problem_id < 'a2'")}
    reasons = {"baseline": {"amc23": {"over-long prompt": ["a3"]}},
               "scale_0": {"amc23": {"over-long prompt": ["a3"]}}}  # fmt: skip
    buckets = study.difficulty(PROBLEMS, base)
    assert "a3" not in set(buckets.problem_id) and len(buckets) == 9
    skipped = study.skipped_problems(PROBLEMS, {"baseline": base, "scale_0": var}, reasons)
    assert sorted(map(tuple, skipped.values.tolist())) == [
        ("baseline", "amc23", "a3", "over-long prompt"),
        ("scale_0", "amc23", "a2", "not evaluated"),
        ("scale_0", "amc23", "a3", "over-long prompt"),
    ]
    counts = study.skipped_counts(skipped).set_index(["variant", "reason"]).problems.to_dict()
    assert counts == {("baseline", "over-long prompt"): 1, ("scale_0", "over-long prompt"): 1,
                      ("scale_0", "not evaluated"): 1}  # fmt: skip


def test_pass_at_1_per_bucket_has_an_interval_around_it(variants):
    buckets = study.difficulty(PROBLEMS, variants["baseline"])
    table = study.pass_by_bucket(variants, buckets).set_index(["variant", "benchmark", "bucket"])
    easy = table.loc[("baseline", "amc23", "easy")]
    assert easy["pass@1"] == 1.0 and easy["problems"] == 2
    lvl1 = table.loc[("baseline", "world", "level 1")]  # w0, w2 solved; w4 half
    assert lvl1["pass@1"] == pytest.approx(2.5 / 3)
    assert lvl1["ci_low"] <= lvl1["pass@1"] <= lvl1["ci_high"] and lvl1["ci_low"] < lvl1["ci_high"]


def test_flips_are_counted_per_problem_with_an_exact_paired_test(variants):
    buckets = study.difficulty(PROBLEMS, variants["baseline"])
    flipped, tests = study.flips(variants, buckets)
    got = {(r.benchmark, r.problem_id, r.flip) for r in flipped.itertuples()}
    assert got == {
        ("world", "w0", "solved->failed"),
        ("world", "w1", "solved->failed"),
        ("amc23", "a3", "failed->solved"),
    }
    t = tests.set_index("benchmark")
    assert t.loc["world", "solved->failed"] == 2 and t.loc["world", "failed->solved"] == 0
    assert t.loc["world", "p_value"] == pytest.approx(0.5)  # 2 of 2 one way: 2 x 1/4
    assert t.loc["amc23", "p_value"] == 1.0
    assert study.mcnemar_exact(0, 10) == pytest.approx(2 / 1024)


def test_failure_modes_are_counted_per_variant_bucket_and_mode(variants):
    moded = {v: {b: study.with_modes(t) for b, t in ts.items()} for v, ts in variants.items()}
    buckets = study.difficulty(PROBLEMS, variants["baseline"])
    modes = study.mode_counts(moded, buckets)
    v = modes[(modes.variant == "scale_0") & (modes.benchmark == "world")]
    lvl1 = v[v.bucket == "level 1"].set_index("mode")["samples"].to_dict()
    assert lvl1 == {"correct": 3, "loop": 2, "no_answer": 0, "arithmetic": 1, "wrong_answer": 0}
    assert v.groupby("bucket")["share"].sum().round(9).eq(1).all()
    w0 = moded["scale_0"]["world"].query("problem_id == 'w0'").iloc[0]
    assert (w0["mode"], w0["evidence"]) == ("loop", "Wait, let me add the numbers again carefully.")


def test_the_study_writes_tables_figures_and_a_viewer_a_browser_shows(variants, tmp_path):
    from playwright.sync_api import sync_playwright

    from sparks.studies.ablation import write_study
    from tests.stack.test_stack import CHROMIUM_FLAGS

    summary = write_study(
        tmp_path / "study", PROBLEMS, variants, {"baseline": 1.0, "scale_0": 0.0}, title="t"
    )
    out = Path(summary["dir"])
    for name in ("pass_by_bucket", "flips", "flip_tests", "failure_modes", "difficulty"):
        assert (out / f"{name}.csv").is_file() and (out / f"{name}.parquet").is_file()
    assert pd.read_parquet(out / "samples.parquet")["response"].str.len().min() > 0
    for fig in ("tradeoff.png", "failure_modes.png"):
        assert (out / fig).stat().st_size > 10_000
    shots = Path(__file__).resolve().parents[2] / "test-artifacts"
    shots.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.goto((out / "viewer.html").resolve().as_uri())
        sections = page.locator("section.flip")
        assert sections.count() == 3
        w1 = page.locator("section.flip[data-problem='w1']")
        assert "solved->failed" in w1.locator("h2").inner_text()
        # side by side: the baseline's correct response, the variant's slip with its evidence marked
        sides = w1.locator(".side")
        assert sides.count() == 2 and "correct" in sides.nth(0).locator("h3").inner_text()
        assert sides.nth(1).locator(".mode").inner_text() == "arithmetic"
        assert sides.nth(1).locator("mark").inner_text() == "46 + 59 = 172"
        assert "true value 105" in sides.nth(1).locator("h3").inner_text()
        loop = page.locator("section.flip[data-problem='w0'] .side").nth(1).locator("mark")
        assert loop.inner_text().count("Wait, let me add the numbers again carefully.") == 6
        images = page.evaluate(
            "Array.from(document.images).map(i => ({alt: i.alt, w: i.naturalWidth,"
            " right: i.getBoundingClientRect().right}))"
        )
        assert [i["alt"] for i in images] == ["tradeoff.png", "failure_modes.png"]
        assert all(i["w"] > 300 for i in images), images  # each figure loaded and drawn
        boxes = [sides.nth(i).bounding_box() for i in range(2)]
        assert boxes[0]["x"] + boxes[0]["width"] <= boxes[1]["x"]  # really side by side
        page.screenshot(path=str(shots / "study-viewer.png"), full_page=True)
        browser.close()

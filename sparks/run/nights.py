"""Nights as runs: each scheduled night is a new run, compared with the night before.

1. plan: the night's name (its scheduled date, YYYY-MM-DD), its own run directory
   `ROOT/<night>` and MLflow run `<config name>-<night>`; the previous night is the newest earlier
   `ROOT/<date>` holding a run. A night is refused in one line (the Prefect UI shows it as the flow
   run's failure) while the previous night is still being written, or when its dry run finds a
   problem (the disk short, a missing input).
2. run: the post-train pipeline on that directory (the flow's part).
3. compare: `night.json` beside the run and, in the night's MLflow run, what changed since the
   previous night: circuit heads gained and lost at the last save, and the pass@1 and reward
   deltas; with a previous night, also a `sparks compare` report of the two (`ROOT/<night>/compare`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from sparks.config import RunConfig

DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Night:
    name: str  # YYYY-MM-DD
    config: RunConfig  # its own output_dir and run name
    previous: Path | None  # the newest earlier night's run directory


def plan_night(cfg: RunConfig, root: str | Path, night: str | date | None = None) -> Night:
    """The night's run (config with its own output_dir and name) and the night before it; raises
    ValueError in one line when it must not start."""
    from sparks.run.plan import dry_run
    from sparks.train.writers import busy_line, live_writers

    name = str(night or date.today())
    if not DATE.match(name):
        raise ValueError(f"night {name!r}: give a date as YYYY-MM-DD")
    root = Path(root)
    earlier = sorted(
        p for p in root.glob("*") if DATE.match(p.name) and p.name < name and _has_run(p)
    )
    previous = earlier[-1] if earlier else None
    if previous is not None and (writers := live_writers(previous)):
        raise ValueError(
            f"the previous night {previous.name} is still running ({busy_line(previous, writers)}); "
            "this night does not start beside it"
        )
    own = cfg.model_copy(update={"output_dir": str(root / name), "name": f"{cfg.name}-{name}"})
    if problems := dry_run(own).problems:
        raise ValueError(f"night {name} not started: {problems[0]}")
    return Night(name, own, previous)


def _has_run(d: Path) -> bool:
    return (d / "run.json").is_file()


def last_save(out: Path) -> dict:
    """A run's last save: its step, circuit heads, pass@1 per benchmark and last logged reward."""
    import pandas as pd

    ledger = pd.read_parquet(out / "ledger.parquet")
    main = ledger[ledger["set"] == ledger["set"].iloc[0]] if "set" in ledger else ledger
    step = int(main.step.max())
    heads = sorted(main[(main.step == step) & main.in_circuit]["head"])
    summary = (
        json.loads((out / "summary.json").read_text()) if (out / "summary.json").is_file() else {}
    )
    evals = summary.get("pass@1") or {}
    last_eval = evals[max(evals, key=int)] if evals else {}
    return {"step": step, "heads": heads, "pass@1": last_eval, "reward": _last_reward(out)}


def _last_reward(out: Path) -> float | None:
    states = sorted(
        out.glob("stage*/checkpoint-*/trainer_state.json"),
        key=lambda p: (p.parts[-3], int(p.parent.name.split("-")[1])),
    )
    for state in reversed(states):
        rewards = [
            e["reward"] for e in json.loads(state.read_text())["log_history"] if "reward" in e
        ]
        if rewards:
            return float(rewards[-1])
    return None


def night_over_night(current: Path, previous: Path | None) -> dict:
    """What changed at the last save since the previous night (None: the first night)."""
    now = last_save(current)
    out: dict = {"night": current.name, "previous": previous.name if previous else None, **now}
    if previous is None:
        return out
    before = last_save(previous)
    out["heads_gained"] = sorted(set(now["heads"]) - set(before["heads"]))
    out["heads_lost"] = sorted(set(before["heads"]) - set(now["heads"]))
    out["pass@1_delta"] = {
        b: round(v - before["pass@1"][b], 4)
        for b, v in now["pass@1"].items()
        if b in before["pass@1"]
    }
    if now["reward"] is not None and before["reward"] is not None:
        out["reward_delta"] = round(now["reward"] - before["reward"], 4)
    return out


def night_metrics(change: dict) -> dict[str, float]:
    """The change as MLflow metrics (night/*)."""
    m: dict[str, float] = {}
    if change.get("previous") is None:
        return m
    m["night/heads_gained"] = len(change["heads_gained"])
    m["night/heads_lost"] = len(change["heads_lost"])
    for b, d in change["pass@1_delta"].items():
        m[f"night/{b}/pass@1_delta"] = d
    if "reward_delta" in change:
        m["night/reward_delta"] = change["reward_delta"]
    return m


def change_line(change: dict) -> str:
    """One line for the log: the night against the previous one."""
    if change.get("previous") is None:
        return f"night {change['night']}: the first night, nothing to compare with"
    deltas = ", ".join(f"{b} pass@1 {d:+.3f}" for b, d in change["pass@1_delta"].items())
    reward = f", reward {change['reward_delta']:+.3f}" if "reward_delta" in change else ""
    gained = ", ".join(change["heads_gained"]) or "none"
    lost = ", ".join(change["heads_lost"]) or "none"
    return (
        f"night {change['night']} against {change['previous']}: heads gained {gained}; "
        f"lost {lost}" + (f"; {deltas}" if deltas else "") + reward
    )

"""The prepared GPU check: every GPU figure the docs mark as not measured, in one command.

    make gpu-check                                   # on a GPU machine: at most ~8 minutes
    .venv/bin/python benchmarks/gpu_check.py --cpu-smoke --out DIR   # tiny shapes, any machine

Prints one markdown table and writes DIR/gpu_check.json. Random weights of real shapes (no hub;
`sparks.models.shapes`), the embedded world's tokenizer and problems where text is needed. Each part runs
in its own process (its own peak memory; a part that fails is a row that says so, the others go on):

1. snapshot: time and peak memory of one circuit snapshot (`build_snapshot`, default pass sizing)
   beside its floor (2 forwards + m x forward/backward on the same batch, as training does it), at
   the Qwen2.5-Math-1.5B shape (bf16, 32 pairs x 512 tokens) and the Qwen3-8B shape (bf16,
   16 x 512), with the pass sizes (`plan_passes`: pairs x IG steps) chosen from `mem_get_info`;
2. generate: vLLM against transformers `generate`, tokens per second, at the 1.5B shape, same
   prompts, sampling and lengths (a random model seldom stops early: both run to max_tokens);
3. grpo: a short TRL GRPO run (`use_vllm`, colocate) at the Qwen2.5-0.5B shape through sparks'
   own pipeline, a snapshot every 2 steps: the snapshots' share of the training wall time;
4. beside each measured peak, `sparks run --dry-run`'s estimate for the same setting.

Peaks: torch's peak allocation on a GPU (reset between floor and snapshot); on a CPU the process's
peak RSS, which only grows: the smoke run checks that every part runs, not its figures (its parts
share one child process, so the imports are paid once).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

GB = 2**30
# (shape, pairs, tokens) of the snapshot rows; the smoke run shrinks every shape to TINY
SNAPSHOTS = [("Qwen/Qwen2.5-Math-1.5B", 32, 512), ("Qwen/Qwen3-8B", 16, 512)]
TINY = dict(
    hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
    num_key_value_heads=2, head_dim=32,
)  # fmt: skip


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _peak(device: str) -> float:
    from snapshot_memory import _peak_gb

    return _peak_gb(device)


def _reset(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _overrides(smoke: bool, vocab: int | None = None) -> dict:
    out = dict(TINY) if smoke else {}
    return out | ({"vocab_size": vocab} if vocab else {})


def _run_config(raw: dict):
    from sparks.config import validate_config

    return validate_config(raw, source="gpu_check")


# 1. snapshot ---------------------------------------------------------------------------------
def part_snapshot(a: dict) -> dict:
    """Every snapshot row, one shape after the other in this process (the peaks are reset
    between them on a GPU, and a model start is paid once)."""
    import gc

    import torch

    rows = []
    for shape, pairs, tokens in a["shapes"]:
        rows.append(_snapshot_row(a | {"shape": shape, "pairs": pairs, "tokens": tokens}))
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return {"rows": rows}


def _snapshot_row(a: dict) -> dict:
    import torch
    from snapshot_memory import _batches, _floor

    from sparks.circuits.adapters import adapter_for
    from sparks.circuits.budget import plan_passes
    from sparks.circuits.snapshot import build_snapshot
    from sparks.circuits.spec import SnapshotSpec
    from sparks.models.shapes import SHAPES, random_model
    from sparks.run.plan import estimate_memory

    device, steps = _device(), a["steps"]
    shape = SHAPES[a["shape"]] | _overrides(a["smoke"])
    model = random_model(shape, dtype=a["dtype"], device=device)
    (b,) = [x.to(device) for x in _batches(model, a["pairs"], a["tokens"])]
    plan = plan_passes(
        adapter_for(model), width=a["tokens"], pairs=a["pairs"], steps=steps,
        dtype=next(model.parameters()).dtype,
    )  # fmt: skip
    row = {"shape": a["shape"], "pairs": a["pairs"], "tokens": a["tokens"]}
    row |= {"pass_pairs": plan.pairs, "pass_steps": plan.steps}
    for what in ("floor", "snapshot"):
        _reset(device)
        t = time.perf_counter()
        if what == "floor":
            _floor(model, b, steps)
        else:
            snap = build_snapshot(model, [b], SnapshotSpec(steps=steps, top_k=200))
            row["finite"] = bool(torch.isfinite(snap.edge_scores).all())
        if device == "cuda":
            torch.cuda.synchronize()
        row[f"{what}_seconds"] = time.perf_counter() - t
        row[f"{what}_peak_gb"] = _peak(device)
    cfg = _run_config(
        {
            "model": {"path": a["shape"], "dtype": a["dtype"]},
            "snapshot": {"steps": steps, "n_pairs": a["pairs"], "batch_size": a["pairs"]},
        }
    )
    total = torch.cuda.mem_get_info()[1] / GB if device == "cuda" else 80.0
    est = estimate_memory(cfg, shape, pair_tokens=a["tokens"], gpu_gb=total)
    row["estimate_gb"] = next(v for k, v in est.items() if k.startswith("snapshot (default"))
    return row


# 2. generate ---------------------------------------------------------------------------------
def _model_dir(shape: str, smoke: bool, dtype: str, tmp: Path, world) -> Path:
    """A random model of `shape` over the world's tokenizer, saved where vLLM can load it."""
    import torch

    from sparks.models.loading import load_tokenizer
    from sparks.models.shapes import SHAPES, random_model

    tok = load_tokenizer(world.model_dir)
    model = random_model(SHAPES[shape] | _overrides(smoke, len(tok)), dtype=dtype, device=_device())
    cfg = model.config
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = (
        tok.bos_token_id, tok.eos_token_id, tok.pad_token_id,
    )  # fmt: skip
    out = tmp / shape.replace("/", "--")
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))
    del model  # the engines load it themselves: leave them the GPU
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return out


def _world(root: str):
    from sparks.world.build import World

    return World(Path(root))


def part_generate(a: dict) -> dict:
    from sparks.evaluate.generate import SamplingSpec, generate
    from sparks.evaluate.runner import build_prompts
    from sparks.models.loading import load_tokenizer

    world = _world(a["world"])
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model = _model_dir(a["shape"], a["smoke"], a["dtype"], Path(tmp), world)
        prompts = build_prompts(load_tokenizer(model), world.tasks("test")[: a["prompts"]])
        spec = SamplingSpec(
            n=a["n"], temperature=0.6, top_p=0.95, max_tokens=a["max_tokens"], seed=0
        )
        row = {"prompts": len(prompts), "n": spec.n, "max_tokens": spec.max_tokens}
        for backend in ("vllm", "transformers"):
            r = generate(model, prompts, spec, backend=backend)
            row[f"{backend}_tokens_per_s"] = r.generated_tokens / r.seconds
            row[f"{backend}_tokens"] = r.generated_tokens
            row[f"{backend}_engine_s"] = r.engine_seconds
    row["ratio"] = row["vllm_tokens_per_s"] / row["transformers_tokens_per_s"]
    return row


# 3. grpo -------------------------------------------------------------------------------------
def part_grpo(a: dict) -> dict:
    import torch

    from sparks.models.shapes import SHAPES
    from sparks.run.pipeline import run_training
    from sparks.run.plan import estimate_memory

    device, world = _device(), _world(a["world"])
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        model = _model_dir(a["shape"], a["smoke"], a["dtype"], Path(tmp), world)
        stage = {
            "method": "grpo", "max_steps": a["steps"], "save_steps": a["save_steps"],
            "batch_size": 8, "num_generations": 4, "max_completion_length": a["completion"],
            "learning_rate": 1e-6, "use_vllm": a["use_vllm"], "vllm_memory": 0.3,
        }  # fmt: skip
        cfg = _run_config(
            {
                "name": "gpu-check-grpo",
                "output_dir": str(Path(tmp) / "run"),
                "model": {"path": str(model), "dtype": a["dtype"]},
                "data": {"train": str(world.tasks_path("train")), "max_samples": 64},
                "stages": [stage],
                "snapshot": {
                    "steps": 5,
                    "n_pairs": 16,
                    "batch_size": 16,
                    "metric": "logit_diff",
                    "pairs": {"mode": "file", "file": str(world.pairs_path)},
                },  # fmt: skip
                "evaluation": {"enabled": False},
                "tracking": {"mlflow_uri": (Path(tmp) / "mlruns").as_uri()},
            }
        )
        _reset(device)
        summary = run_training(cfg)
    shape = SHAPES[a["shape"]] | _overrides(a["smoke"], 512)
    total = torch.cuda.mem_get_info()[1] / GB if device == "cuda" else 80.0
    est = estimate_memory(cfg, shape, pair_tokens=256, gpu_gb=total)
    return {
        "wall_s": summary["wall_seconds"],
        "snapshot_s": summary["snapshot_seconds"],
        "share": summary["snapshot_seconds"] / summary["wall_seconds"],
        "saves": a["steps"] // a["save_steps"],
        "use_vllm": a["use_vllm"],
        "peak_gb": _peak(device),
        "estimate_gb": next(v for k, v in est.items() if k.startswith("train stage0")),
    }


PARTS = {"snapshot": part_snapshot, "generate": part_generate, "grpo": part_grpo}


def plan_parts(smoke: bool, world: str) -> list[tuple[str, dict]]:
    """Every part with its settings: the real shapes on a GPU, TINY ones for the smoke run."""
    dtype = "float32" if smoke else "bfloat16"
    shapes = [(s, 2, 16) if smoke else (s, p, t) for s, p, t in SNAPSHOTS]
    parts = [("snapshot", {"shape": ", ".join(s for s, _, _ in shapes), "shapes": shapes,
                           "steps": 5, "dtype": dtype, "smoke": smoke})]  # fmt: skip
    parts.append(
        ("generate", {"shape": "Qwen/Qwen2.5-Math-1.5B", "prompts": 8 if smoke else 128,
                      "n": 2 if smoke else 4, "max_tokens": 16 if smoke else 512, "dtype": dtype,
                      "smoke": smoke, "world": world})
    )  # fmt: skip
    parts.append(
        ("grpo", {"shape": "Qwen/Qwen2.5-0.5B", "steps": 2 if smoke else 8,
                  "save_steps": 2, "completion": 16 if smoke else 256, "dtype": dtype,
                  "use_vllm": not smoke, "smoke": smoke, "world": world})
    )  # fmt: skip
    return parts


def run_parts(parts: list[tuple[str, dict]]) -> list[dict]:
    """Run `parts` one after another in this process; a part that fails is a row saying why."""
    rows = []
    for name, a in parts:
        print(f"[gpu-check] {name} {a['shape']} ...", file=sys.stderr, flush=True)
        t = time.perf_counter()
        try:
            result = PARTS[name](a) | {"part_seconds": time.perf_counter() - t}
        except Exception as e:
            import traceback

            traceback.print_exc()
            result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        rows.append({"part": name, "args": a, "result": result})
    return rows


def _in_child(parts: list[tuple[str, dict]], timeout: float) -> list[dict]:
    """`run_parts` in a child process: its peaks are its own, and a crash is a row, not the end."""
    cmd = [sys.executable, __file__, "--parts", json.dumps(parts)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return [
            {"part": n, "args": a, "result": {"error": f"over {timeout:.0f} s"}} for n, a in parts
        ]
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return [{"part": n, "args": a, "result": {"error": why}} for n, a in parts]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    if any("error" in r["result"] for r in rows):
        sys.stderr.write(done.stderr[-4000:])  # the failed parts' tracebacks
    return rows


def _gb(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(rows: list[dict]) -> str:
    """The results as one markdown table."""
    lines = [
        "| check | shape | setting | measured | peak GB | dry-run estimate GB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        a, m = r["args"], r["result"]
        if "error" in m:
            lines.append(f"| {r['part']} | {a['shape']} | | FAILED: {m['error']} | | |")
            continue
        if r["part"] == "snapshot":
            lines += [
                f"| snapshot | {m['shape']} | {a['dtype']}, {m['pairs']} pairs x {m['tokens']} "
                f"tokens, {a['steps']} steps; passes of {m['pass_pairs']} pairs x "
                f"{m['pass_steps']} steps | {m['snapshot_seconds']:.1f} s "
                f"({m['snapshot_seconds'] / m['floor_seconds']:.2f}x its floor "
                f"{m['floor_seconds']:.1f} s){'' if m['finite'] else ', NOT FINITE'} | "
                f"{_gb(m['snapshot_peak_gb'])} (floor {_gb(m['floor_peak_gb'])}) | "
                f"{_gb(m['estimate_gb'])} |"
                for m in r["result"]["rows"]
            ]
        elif r["part"] == "generate":
            lines.append(
                f"| vLLM vs generate | {a['shape']} | {m['prompts']} prompts x {m['n']}, "
                f"{m['max_tokens']} tokens | vLLM {m['vllm_tokens_per_s']:.0f} tok/s, "
                f"transformers {m['transformers_tokens_per_s']:.0f} tok/s: {m['ratio']:.1f}x "
                f"(engine start {m['vllm_engine_s']:.0f} s) | | |"
            )
        else:
            lines.append(
                f"| GRPO + snapshots | {a['shape']} | {a['steps']} steps, a save every "
                f"{a['save_steps']}, use_vllm {a['use_vllm']} | snapshots {m['snapshot_s']:.1f} s "
                f"of {m['wall_s']:.1f} s ({m['share']:.1%}) | {_gb(m['peak_gb'])} | "
                f"{_gb(m['estimate_gb'])} |"
            )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cpu-smoke", action="store_true", help="tiny shapes: check that it runs")
    ap.add_argument("--out", default="runs/gpu-check", help="directory for gpu_check.json")
    ap.add_argument("--only", nargs="+", choices=list(PARTS), help="run only these parts")
    ap.add_argument("--world", help="a built world directory (default: the embedded default's)")
    ap.add_argument("--parts", help=argparse.SUPPRESS)  # a child: run these, print the rows
    args = ap.parse_args()
    if args.parts:
        print(json.dumps(run_parts([tuple(p) for p in json.loads(args.parts)])))
        return
    import torch

    if not args.cpu_smoke and not torch.cuda.is_available():
        sys.exit("gpu_check: no GPU here: run it on a GPU machine, or pass --cpu-smoke")
    if args.world is None:
        from sparks.config import WorldSettings
        from sparks.world.build import world_for

        args.world = str(world_for(WorldSettings()).root)
    started = time.perf_counter()
    parts = [(n, a) for n, a in plan_parts(args.cpu_smoke, args.world) if n in (args.only or PARTS)]
    if args.cpu_smoke:  # one child for every part: the smoke checks that each runs, not peaks
        rows = _in_child(parts, timeout=600)
    else:  # one child per part: each peak is its own
        rows = [row for part in parts for row in _in_child([part], timeout=300)]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu (smoke)"
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "smoke": args.cpu_smoke,
        "seconds": time.perf_counter() - started,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2))
    print(f"gpu check {report['date']} on {device}, {report['seconds']:.0f} s\n")
    print(table(rows))
    if any("error" in r["result"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()

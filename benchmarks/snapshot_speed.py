"""How much a circuit snapshot costs next to the training work it rides on.

For each model: the time of m x (forward + backward) on a batch of prompt pairs (the floor: EAP-IG
with m steps needs at least that), the attribution time and the full snapshot time (attribution +
circuit + bootstrap stability + faithfulness curve) on the same batch, their ratios (target for the
snapshot: <= 1.3), and peak memory. Medians over --repeats runs.

    .venv/bin/python benchmarks/snapshot_speed.py [--steps 5] [--batch 16] [--repeats 3]

Rows: the embedded world's model (CPU or GPU), and a Qwen2.5-1.5B-shaped model built from a config
with random weights (GPU only: on a CPU the row is skipped and the script says so).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.circuits.attribution import attribute  # noqa: E402
from sparks.circuits.batches import PairBatch, encode_pairs  # noqa: E402
from sparks.circuits.snapshot import build_snapshot  # noqa: E402
from sparks.circuits.spec import SnapshotSpec  # noqa: E402


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: str, repeats: int) -> float:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _floor(model, batches: list[PairBatch], steps: int) -> None:
    """m x (forward + backward to the input embeddings) of the clean prompts."""
    emb = model.get_input_embeddings()
    for b in batches:
        for _ in range(steps):
            e = emb(b.clean_ids).detach().requires_grad_()
            logits = model(inputs_embeds=e, attention_mask=b.mask, use_cache=False).logits
            torch.autograd.grad(logits[torch.arange(len(b.last)), b.last, 0].sum(), e)


def _peak_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process peak RSS


def bench(
    name: str, model, batches: list[PairBatch], steps: int, repeats: int, device: str
) -> dict:
    model = model.to(device).eval()
    batches = [b.to(device) for b in batches]
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    floor = _timed(lambda: _floor(model, batches, steps), device, repeats)
    floor_mem = _peak_mb(device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    attr = _timed(
        lambda: attribute(model, batches, steps=steps, metric="logit_diff"), device, repeats
    )
    snap = _timed(
        lambda: build_snapshot(model, batches, SnapshotSpec(steps=steps, top_k=200), n_boot=50),
        device,
        repeats,
    )
    tokens = sum(int(b.mask.sum()) for b in batches)
    return {
        "model": name,
        "device": device,
        "pairs": sum(len(b.last) for b in batches),
        "tokens": tokens,
        "floor_s": floor,
        "attr_s": attr,
        "snapshot_s": snap,
        "attr_ratio": attr / floor,
        "snapshot_ratio": snap / floor,
        "floor_peak_mb": floor_mem,
        "snapshot_peak_mb": _peak_mb(device),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--world", default="artifacts/worlds/bench", help="world directory (built if missing)"
    )
    args = ap.parse_args()
    torch.manual_seed(0)
    from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config

    from sparks.world.build import WorldSpec, build_world

    world = build_world(Path(args.world), WorldSpec(n_train=200, n_test=20, n_pairs=args.batch))
    tok = AutoTokenizer.from_pretrained(str(world.model_dir))
    batches = encode_pairs(tok, world.pairs(), batch_size=args.batch)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = [
        bench(
            "embedded (4L x 4H, 1M)",
            AutoModelForCausalLM.from_pretrained(str(world.model_dir)),
            batches,
            args.steps,
            args.repeats,
            device,
        )
    ]
    if device == "cuda":
        cfg = Qwen2Config(
            hidden_size=1536,
            intermediate_size=8960,
            num_hidden_layers=28,
            num_attention_heads=12,
            num_key_value_heads=2,
            vocab_size=151936,
            tie_word_embeddings=True,
            max_position_embeddings=4096,
        )
        big = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
        # Same pairs, ids folded into the big vocabulary (random weights: only shapes matter).
        rows.append(
            bench(
                "Qwen2.5-1.5B-shaped (random, bf16)", big, batches, args.steps, args.repeats, device
            )
        )
    else:
        print(
            "Qwen2.5-1.5B-shaped row skipped: no CUDA GPU on this machine (it needs one to finish in minutes)."
        )
    print(
        f"\nEAP-IG steps m={args.steps}, batch={args.batch} pairs, torch threads={torch.get_num_threads()}"
    )
    print(
        f"{'model':38} {'dev':4} {'tokens':>6} {'m x (fwd+bwd) s':>16} {'attr s':>8} {'snapshot s':>11} "
        f"{'attr/floor':>10} {'snap/floor':>10} {'peak MB':>8}"
    )
    for r in rows:
        print(
            f"{r['model']:38} {r['device']:4} {r['tokens']:6d} {r['floor_s']:16.3f} {r['attr_s']:8.3f} "
            f"{r['snapshot_s']:11.3f} {r['attr_ratio']:10.2f} {r['snapshot_ratio']:10.2f} {r['snapshot_peak_mb']:8.0f}"
        )


if __name__ == "__main__":
    main()

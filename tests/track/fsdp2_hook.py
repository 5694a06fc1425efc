"""The checkpoint hook on a model sharded with torch's FSDP2, on every rank of a torchrun launch.

    torchrun --nproc_per_node 2 tests/track/fsdp2_hook.py WORLD_MODEL_DIR PAIRS OUT_DIR

Both ranks train the world model (each on its own batch) with its parameters sharded over gloo
(`fully_shard`, DTensor parameters) and call the hook's `on_save` at steps 1 and 2, as a Trainer
does on every rank. The main process also writes each save's full weights (a consolidated
checkpoint) for the test to snapshot on one process. At step 3 the main process's snapshot fails
on purpose: the other rank must hear of it (RankFailure) instead of waiting for a collective.
Each rank writes OUT_DIR/rank{R}.json with what it saw.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.distributed.fsdp import fully_shard
from transformers import AutoModelForCausalLM, AutoTokenizer

from sparks.circuits.batches import encode_pairs, load_pairs
from sparks.circuits.spec import SnapshotSpec
from sparks.track import hook as hook_module
from sparks.track.hook import CircuitSnapshotCallback
from sparks.track.sharded import sharding, unsharded_copy
from sparks.train.ranks import RankFailure, current_ranks, leave_process_groups


def main() -> None:
    model_dir, pairs_path, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
    ranks = current_ranks(timeout_minutes=2)
    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    report = {"rank": ranks.rank, "world_size": ranks.world_size, "sharding": sharding(model)}
    batches = encode_pairs(tok, load_pairs(pairs_path)[:8], batch_size=4)
    seen = []
    hook = CircuitSnapshotCallback(
        batches,
        SnapshotSpec(steps=2, top_k=40),
        ranks=ranks,
        on_snapshot=lambda s, snap, p: seen.append(s),
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    args = SimpleNamespace(output_dir=str(out))
    texts = [p["clean"] for p in load_pairs(pairs_path)[ranks.rank * 4 : ranks.rank * 4 + 4]]
    enc = tok(texts, return_tensors="pt", padding=True)
    for step in (1, 2):
        loss = model(**enc, labels=enc["input_ids"]).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        ckpt = out / f"checkpoint-{step}"
        ckpt.mkdir(parents=True, exist_ok=True)
        state = SimpleNamespace(global_step=step, is_world_process_zero=ranks.is_main)
        hook.on_save(args, state, None, model=model)
        full = unsharded_copy(model, is_main=ranks.is_main)  # the reference, as Trainer saves it
        if ranks.is_main:
            full.save_pretrained(str(ckpt / "full"))
            tok.save_pretrained(str(ckpt / "full"))
    report["snapshots_reported"] = seen

    # step 3: the main process's snapshot fails; the other rank must not wait for it
    def broken(*a, **k):
        raise RuntimeError("a snapshot that fails on purpose")

    if ranks.is_main:
        hook_module.build_or_fail = broken
    (out / "checkpoint-3").mkdir(exist_ok=True)
    state = SimpleNamespace(global_step=3, is_world_process_zero=ranks.is_main)
    start = time.perf_counter()
    try:
        hook.on_save(args, state, None, model=model)
        report["step3"] = "no error"
    except RankFailure as e:
        report["step3"] = f"RankFailure: {e}"
    except RuntimeError as e:
        report["step3"] = f"RuntimeError: {e}"
    report["step3_seconds"] = time.perf_counter() - start
    (out / f"rank{ranks.rank}.json").write_text(json.dumps(report))
    leave_process_groups()  # as `sparks train` does: no abort in gloo's teardown


if __name__ == "__main__":
    main()

"""`make demo`: the main job on the embedded default.

Builds (or reuses) the embedded world, then samples answers to a few of its test problems from the
tiny base model with vLLM, and writes them under the output directory.
"""

from __future__ import annotations

from pathlib import Path

from sparks.config import load_config
from sparks.evaluate.generate import SamplingSpec, generate
from sparks.files import atomic_write_text
from sparks.world.build import world_for
from sparks.world.tasks import chat_prompt


def run_demo(config_path: str | Path, out_dir: Path) -> None:
    """Run the demo described by `config_path`, writing into `out_dir`."""
    import json

    from transformers import AutoTokenizer

    cfg = load_config(config_path)
    world = world_for(cfg.world)
    print(f"[sparks] world: {world.root} (model {world.model_dir})")
    tok = AutoTokenizer.from_pretrained(str(world.model_dir))
    tasks = world.tasks("test")[:8]
    ev = cfg.evaluation
    spec = SamplingSpec(n=ev.n, temperature=ev.temperature, top_p=ev.top_p, max_tokens=ev.max_tokens, seed=ev.seed)
    print(f"[sparks] sampling {len(tasks)} test problems x {spec.n} with vLLM ...")
    result = generate(world.model_dir, [chat_prompt(tok, t["problem"]) for t in tasks], spec)
    rows = [
        {"id": t["id"], "problem": t["problem"], "answer": t["answer"], "completion": c.text, "tokens": c.n_tokens}
        for t, row in zip(tasks, result.completions, strict=True)
        for c in row
    ]
    out = Path(out_dir) / "samples.jsonl"
    atomic_write_text(out, "".join(json.dumps(r) + "\n" for r in rows))
    print(f"[sparks] vLLM engine start {result.engine_seconds:.1f}s, generation {result.seconds:.2f}s, "
          f"{result.generated_tokens} tokens")
    print(f"[sparks] first sample: {rows[0]['problem']!r} -> {rows[0]['completion'][:60]!r}")
    print(f"[sparks] samples written to {out}")

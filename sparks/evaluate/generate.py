"""Sample completions from a checkpoint directory with vLLM or transformers.

vLLM runs in a child process (`python -m sparks.evaluate._vllm_worker`), so the engine's memory is
returned to the caller when it ends and the caller needs no `if __name__ == "__main__"` guard.
The transformers backend exists for parity checks and for machines without vLLM.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sparks.errors import UserError
from sparks.evaluate.spec import DEFAULT_SAMPLING, SamplingSpec

BACKENDS = ("vllm", "transformers")


class GenerationError(UserError):
    """Generation could not run; the message says why and what to do. `partial` holds the
    completions of the prompts that finished before it stopped (in prompt order)."""

    def __init__(self, message: str, partial: list | None = None):
        super().__init__(message)
        self.partial = partial or []


@dataclass(frozen=True)
class Completion:
    text: str
    n_tokens: int
    truncated: bool  # stopped by max_tokens, not by an end-of-sequence token


@dataclass(frozen=True)
class GenerationResult:
    completions: list[list[Completion]]  # [prompt][sample]
    seconds: float  # generation only, engine start excluded
    engine_seconds: float

    @property
    def generated_tokens(self) -> int:
        return sum(c.n_tokens for row in self.completions for c in row)


def generate(
    model_dir: str | Path,
    prompts: list[str],
    spec: SamplingSpec = DEFAULT_SAMPLING,
    *,
    backend: str = "vllm",
    progress: bool = False,
) -> GenerationResult:
    """`spec.n` completions for each already-formatted prompt (a progress bar on stderr if asked)."""
    model_dir = Path(model_dir)
    if backend not in BACKENDS:
        raise GenerationError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if not (model_dir / "config.json").is_file():
        raise GenerationError(
            f"{model_dir} is not a checkpoint directory (no config.json): pass a saved model"
        )
    if not prompts:
        raise GenerationError("no prompts to generate from: the benchmark or dataset is empty")
    if backend == "vllm":
        return _generate_vllm(model_dir, prompts, spec, progress)
    return _generate_transformers(model_dir, prompts, spec, progress)


def _generate_vllm(
    model_dir: Path, prompts: list[str], spec: SamplingSpec, progress: bool
) -> GenerationResult:
    with tempfile.TemporaryDirectory(prefix="sparks-vllm-") as tmp:
        req, resp, log = (
            Path(tmp, "request.json"),
            Path(tmp, "response.json"),
            Path(tmp, "vllm.log"),
        )
        req.write_text(
            json.dumps(
                {
                    "model": str(model_dir),
                    "prompts": prompts,
                    "sampling": spec.model_dump(),
                    "progress": progress,
                }
            )
        )
        env = {"VLLM_CPU_KVCACHE_SPACE": "1", "TOKENIZERS_PARALLELISM": "false"} | os.environ
        with open(log, "w") as logf:
            # The child's log goes to a file (its tail is shown on failure); its progress bar, on
            # stderr, reaches the terminal. It runs in a session of its own, and whatever is left
            # of that session when it ends (vLLM's engine-core processes, orphaned if the worker
            # died) is killed: an orphaned engine holds the memory and the terminal's stderr.
            proc = subprocess.Popen(
                [sys.executable, "-m", "sparks.evaluate._vllm_worker", str(req), str(resp)],
                stdout=logf,
                stderr=None if progress else subprocess.STDOUT,
                env=env | ({"VLLM_LOGGING_LEVEL": "WARNING"} if progress else {}),
                start_new_session=True,
            )
            try:
                proc.wait()
            finally:
                _kill_session(proc)
        if proc.returncode != 0 or not resp.is_file():
            text = log.read_text()
            reason = _reason(text)
            if proc.returncode < 0:  # on a CPU the engine runs in the worker: it was the engine
                reason = (
                    f"vLLM's engine process {proc.pid} died (signal {-proc.returncode}: killed, "
                    "or out of memory?)"
                )
            raise GenerationError(
                f"vLLM failed on {model_dir} (exit {proc.returncode}): {reason}; "
                f"its log ends:\n{text[-2000:]}",
                partial=_finished(Path(str(resp) + ".partial.jsonl")),
            )
        out = json.loads(resp.read_text())
    rows = [[Completion(**c) for c in row] for row in out["completions"]]
    return GenerationResult(rows, out["seconds"], out["engine_seconds"])


def _kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL every process left in `proc`'s session (it leads one: start_new_session)."""
    import signal

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # nothing left
    proc.wait()


def _finished(path: Path) -> list[list[Completion]]:
    """The complete lines of a worker's partial file (a line cut by a kill is dropped)."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append([Completion(**c) for c in json.loads(line)])
        except (json.JSONDecodeError, TypeError):
            break
    return rows


def _reason(log: str) -> str:
    """The line of a child's log that says why it failed (the last exception line)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "Error" in ln.split(":")[0] or ln.startswith("Exception")]
    if errors:
        return errors[-1][:300]
    return lines[-1][:300] if lines else "no output (killed, or out of memory?)"


def _generate_transformers(
    model_dir: Path, prompts: list[str], spec: SamplingSpec, progress: bool
) -> GenerationResult:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(str(model_dir), padding_side="left")
    # on a GPU where there is one (bf16 where supported), as vLLM would be: a fair comparison
    # and a usable fallback; float32 on a CPU
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype)
    model = model.to("cuda" if cuda else "cpu").eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    engine_seconds = time.perf_counter() - t0
    torch.manual_seed(spec.seed)
    t0 = time.perf_counter()
    rows: list[list[Completion]] = []
    batch = max(1, 64 // spec.n)
    starts = range(0, len(prompts), batch)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="generate", unit="batch")
    for i in starts:
        enc = tok(
            prompts[i : i + batch], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(model.device)
        greedy = spec.temperature == 0
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=spec.max_tokens,
                do_sample=not greedy,
                temperature=None if greedy else spec.temperature,
                top_p=None if greedy else spec.top_p,
                num_return_sequences=spec.n,
                pad_token_id=tok.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        for j in range(0, new.shape[0], spec.n):
            row = []
            for seq in new[j : j + spec.n].tolist():
                ended = next((k for k, t in enumerate(seq) if t in eos_ids), None)
                ids = seq if ended is None else seq[:ended]
                row.append(
                    Completion(
                        str(tok.decode(ids, skip_special_tokens=True)),
                        len(ids) + (ended is not None),
                        ended is None,
                    )
                )
            rows.append(row)
    return GenerationResult(rows, time.perf_counter() - t0, engine_seconds)

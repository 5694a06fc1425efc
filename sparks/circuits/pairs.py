"""Clean/corrupted prompt pairs: read, check, tokenize and batch them for attribution.

A pairs file is JSON lines with `clean`, `corrupted`, `clean_answer`, `corrupted_answer` (the
embedded world writes such files). The metric compares the answers' first tokens at the last
prompt position. EAP-IG patches position by position, so each pair's two prompts must have equal
token length; pairs of different lengths are right-padded within a batch (causal attention keeps
padding out of every real position).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import torch

from sparks.files import read_jsonl

FIELDS = ("clean", "corrupted", "clean_answer", "corrupted_answer")


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the file, the pair and the fix."""


@dataclass(frozen=True)
class PairBatch:
    clean_ids: torch.Tensor  # [B, P]
    corrupt_ids: torch.Tensor  # [B, P]
    mask: torch.Tensor  # [B, P] 1 on real tokens
    last: torch.Tensor  # [B] index of each prompt's last real token
    clean_tok: torch.Tensor  # [B] first token of the clean answer
    corrupt_tok: torch.Tensor  # [B] first token of the corrupted answer

    def _map(self, fn) -> PairBatch:
        return PairBatch(*(fn(getattr(self, f.name)) for f in fields(self)))

    def head(self, n: int) -> PairBatch:
        """The first `n` pairs of the batch."""
        return self._map(lambda t: t[:n])

    def repeat(self, c: int) -> PairBatch:
        """The batch stacked `c` times (for evaluating several IG steps in one pass)."""
        return self if c == 1 else self._map(lambda t: t.repeat(c, *([1] * (t.dim() - 1))))

    def to(self, device) -> PairBatch:
        return self._map(lambda t: t.to(device))


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pairs file, refusing a missing or empty file and records without the needed fields."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(
            f"pairs file {path} not found: pass a JSONL file such as a world's pairs.jsonl"
        )
    pairs = read_jsonl(path)
    if not pairs:
        raise PairsError(f"pairs file {path} is empty: it needs at least one clean/corrupted pair")
    for i, p in enumerate(pairs, 1):
        missing = [f for f in FIELDS if f not in p]
        if missing:
            raise PairsError(
                f"{path}:{i}: pair lacks {', '.join(missing)}; every line needs {', '.join(FIELDS)}"
            )
    return pairs


def encode_pairs(
    tokenizer, pairs: list[dict], *, batch_size: int = 16, source: str = "pairs"
) -> list[PairBatch]:
    """Tokenize and batch `pairs`; unequal clean/corrupted lengths or equal answer tokens are refused."""
    rows = []
    for i, p in enumerate(pairs, 1):
        clean = tokenizer(p["clean"], add_special_tokens=False)["input_ids"]
        corrupt = tokenizer(p["corrupted"], add_special_tokens=False)["input_ids"]
        if len(clean) != len(corrupt):
            raise PairsError(
                f"{source}: pair {p.get('id', i)} has {len(clean)} clean and {len(corrupt)} corrupted tokens: "
                "EAP-IG needs equal lengths; pad or truncate them to a common length"
            )
        a = tokenizer(p["clean_answer"], add_special_tokens=False)["input_ids"][:1]
        b = tokenizer(p["corrupted_answer"], add_special_tokens=False)["input_ids"][:1]
        if not a or not b or a == b:
            raise PairsError(
                f"{source}: pair {p.get('id', i)}: the answers' first tokens must differ (the metric compares them)"
            )
        rows.append((clean, corrupt, a[0], b[0]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        width = max(len(r[0]) for r in chunk)
        ids = torch.full((len(chunk), 2, width), pad, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for j, (c, x, _, _) in enumerate(chunk):
            ids[j, 0, : len(c)] = torch.tensor(c)
            ids[j, 1, : len(x)] = torch.tensor(x)
            mask[j, : len(c)] = 1
        batches.append(
            PairBatch(
                ids[:, 0],
                ids[:, 1],
                mask,
                mask.sum(1) - 1,
                torch.tensor([r[2] for r in chunk]),
                torch.tensor([r[3] for r in chunk]),
            )
        )
    return batches

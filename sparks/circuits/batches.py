"""Clean/corrupted prompt pairs: read, check, tokenize and batch them for attribution.

A pairs file is JSON lines, one pair a line, in one of two forms:
- text pairs (`clean`, `corrupted`, `clean_answer`, `corrupted_answer`; what the embedded world and
  hand-made files hold), tokenized here with the model's tokenizer;
- token pairs, as `sparks pairs` writes them: `clean_ids`, `corrupted_ids` (equal length, built
  for one tokenizer, whose fingerprint is in `tokenizer`), optionally the answers, and
  `span_start`, the first position of the answer prefix (contrast pairs).
A pair that carries a tokenizer fingerprint is refused with any other tokenizer: the same text
means other tokens there, and a circuit measured on them means nothing.

Readout positions: answer-token metrics read the last position; span metrics (`kl_prefix`) read
every answer-prefix position (the last position alone where a pair has no prefix).
EAP-IG patches position by position, so each pair's two prompts must have equal token length;
pairs of different lengths are right-padded within a batch (causal attention keeps padding out
of every real position).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from sparks.files import read_jsonl
from sparks.models.loading import tokenizer_fingerprint

FIELDS = ("clean", "corrupted", "clean_answer", "corrupted_answer")
TOKEN_FIELDS = ("clean_ids", "corrupted_ids")
NO_ANSWER = -1  # answer token of a pair without answers (only KL metrics apply)


class PairsError(ValueError):
    """A pairs file that cannot be used; the message names the file, the pair and the fix."""


@dataclass(frozen=True)
class PairBatch:
    clean_ids: torch.Tensor  # [B, P]
    corrupt_ids: torch.Tensor  # [B, P]
    mask: torch.Tensor  # [B, P] 1 on real tokens
    last: torch.Tensor  # [B] index of each prompt's last real token
    clean_tok: torch.Tensor  # [B] first token of the clean answer (NO_ANSWER if none)
    corrupt_tok: torch.Tensor  # [B] first token of the corrupted answer (NO_ANSWER if none)
    span: torch.Tensor  # [B, T] answer-prefix positions (padded with the last position)
    span_w: torch.Tensor  # [B, T] 1 on real span positions, 0 on padding

    def _map(self, fn) -> PairBatch:
        return PairBatch(*(fn(getattr(self, f.name)) for f in fields(self)))

    def head(self, n: int) -> PairBatch:
        """The first `n` pairs of the batch."""
        return self.rows(0, n)

    def rows(self, start: int, stop: int) -> PairBatch:
        """Pairs start..stop-1 of the batch (a micro-batch)."""
        return self._map(lambda t: t[start:stop])

    def take(self, index: torch.Tensor) -> PairBatch:
        """The pairs at `index` (a micro-batch of pairs of similar length)."""
        return self._map(lambda t: t[index.to(t.device)])

    def trimmed(self) -> PairBatch:
        """The batch without the padding columns its longest pair does not reach."""
        w = int(self.last.max()) + 1
        if w == self.width:
            return self
        return replace(
            self,
            clean_ids=self.clean_ids[:, :w],
            corrupt_ids=self.corrupt_ids[:, :w],
            mask=self.mask[:, :w],
        )

    def repeat(self, c: int) -> PairBatch:
        """The batch stacked `c` times (for evaluating several IG steps in one pass)."""
        return self if c == 1 else self._map(lambda t: t.repeat(c, *([1] * (t.dim() - 1))))

    def to(self, device) -> PairBatch:
        return self._map(lambda t: t.to(device))

    def swapped(self) -> PairBatch:
        """Clean and corrupted exchanged (contrast pairs seen from the other model's side)."""
        return PairBatch(
            self.corrupt_ids,
            self.clean_ids,
            self.mask,
            self.last,
            self.corrupt_tok,
            self.clean_tok,
            self.span,
            self.span_w,
        )

    @property
    def has_answers(self) -> bool:
        return bool((self.clean_tok != NO_ANSWER).all() and (self.corrupt_tok != NO_ANSWER).all())

    @property
    def width(self) -> int:
        return int(self.clean_ids.shape[1])


def pairs_record(path: str | Path, *, name: str = "", n_pairs: int) -> dict:
    """What a snapshot records of the pairs it measured: the pair set's name, the file, its
    SHA-256 (two snapshots are comparable when it matches) and how many pairs were used."""
    import hashlib

    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"set": name, "file": str(path), "sha256": digest, "n_pairs": n_pairs}


def load_pairs(path: str | Path) -> list[dict]:
    """Read a pairs file, refusing a missing or empty file and records without the needed fields."""
    path = Path(path)
    if not path.is_file():
        raise PairsError(
            f"pairs file {path} not found: build one with `sparks pairs MODEL --out FILE`"
        )
    pairs = read_jsonl(path)
    if not pairs:
        raise PairsError(f"pairs file {path} is empty: it needs at least one clean/corrupted pair")
    for i, p in enumerate(pairs, 1):
        if all(f in p for f in TOKEN_FIELDS):
            continue
        missing = [f for f in FIELDS if f not in p]
        if missing:
            raise PairsError(
                f"{path}:{i}: pair lacks {', '.join(missing)}; every line needs {', '.join(FIELDS)} "
                f"(text pairs) or {', '.join(TOKEN_FIELDS)} (token pairs from `sparks pairs`)"
            )
    return pairs


def check_tokenizer(
    pairs: list[dict], tokenizer, *, source: str, model: str = "this model"
) -> None:
    """Refuse pairs built for another tokenizer, with the command that builds the right ones."""
    mine = tokenizer_fingerprint(tokenizer)
    for i, p in enumerate(pairs, 1):
        theirs = p.get("tokenizer")
        if theirs is not None and theirs != mine:
            raise PairsError(
                f"{source}: pair {p.get('id', i)} was built for another tokenizer ({theirs}; "
                f"{model}'s is {mine}): build pairs for it with `sparks pairs {model} --out FILE` "
                "or set snapshot.pairs.mode to numbers or contrast"
            )


def _ids(tokenizer, p: dict, key: str, text_key: str) -> list[int]:
    if key in p:
        return [int(t) for t in p[key]]
    return tokenizer(p[text_key], add_special_tokens=False)["input_ids"]


def _answer_tokens(tokenizer, p: dict) -> tuple[int, int] | None:
    a, b = p.get("clean_answer"), p.get("corrupted_answer")
    if a is None or b is None:
        return None
    a = tokenizer(str(a), add_special_tokens=False)["input_ids"][:1]
    b = tokenizer(str(b), add_special_tokens=False)["input_ids"][:1]
    return (a[0], b[0]) if a and b else None


def encode_pairs(
    tokenizer, pairs: list[dict], *, batch_size: int = 16, source: str = "pairs"
) -> list[PairBatch]:
    """Tokenize and batch `pairs`; unequal clean/corrupted lengths, equal answer tokens or another
    tokenizer's pairs are refused."""
    if not pairs:
        raise PairsError(f"{source}: no pairs to encode (the file or dataset is empty)")
    check_tokenizer(pairs, tokenizer, source=source)
    rows = []
    for i, p in enumerate(pairs, 1):
        clean = _ids(tokenizer, p, "clean_ids", "clean")
        corrupt = _ids(tokenizer, p, "corrupted_ids", "corrupted")
        if len(clean) != len(corrupt) or not clean:
            raise PairsError(
                f"{source}: pair {p.get('id', i)} has {len(clean)} clean and {len(corrupt)} corrupted tokens: "
                "EAP-IG needs equal lengths (of at least one token); pad or truncate them to a common length"
            )
        answers = _answer_tokens(tokenizer, p)
        if answers is not None and answers[0] == answers[1]:
            raise PairsError(
                f"{source}: pair {p.get('id', i)}: the answers' first tokens must differ (the metric compares them)"
            )
        start = p.get("span_start")
        if start is not None and not 0 < int(start) < len(clean):
            raise PairsError(
                f"{source}: pair {p.get('id', i)}: span_start {start} is outside its {len(clean)} tokens"
            )
        span = list(range(int(start), len(clean))) if start is not None else [len(clean) - 1]
        rows.append((clean, corrupt, answers or (NO_ANSWER, NO_ANSWER), span))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    batches = []
    for s in range(0, len(rows), batch_size):
        chunk = rows[s : s + batch_size]
        width = max(len(r[0]) for r in chunk)
        n_span = max(len(r[3]) for r in chunk)
        ids = torch.full((len(chunk), 2, width), pad, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        spans = torch.zeros(len(chunk), n_span, dtype=torch.long)
        span_w = torch.zeros(len(chunk), n_span)
        for j, (c, x, _, sp) in enumerate(chunk):
            ids[j, 0, : len(c)] = torch.tensor(c)
            ids[j, 1, : len(x)] = torch.tensor(x)
            mask[j, : len(c)] = 1
            spans[j] = len(c) - 1
            spans[j, : len(sp)] = torch.tensor(sp)
            span_w[j, : len(sp)] = 1
        batches.append(
            PairBatch(
                ids[:, 0],
                ids[:, 1],
                mask,
                mask.sum(1) - 1,
                torch.tensor([r[2][0] for r in chunk]),
                torch.tensor([r[2][1] for r in chunk]),
                spans,
                span_w,
            )
        )
    return batches

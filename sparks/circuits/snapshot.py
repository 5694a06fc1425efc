"""CircuitSnapshot: one model's circuit at one training step, and its on-disk form.

Building a snapshot:
1. EAP-IG edge scores over the prompt pairs (`attribute`), kept per pair.
2. The circuit: top-k edges by |score|, pruned to input-to-logits paths; its heads.
3. Head stability: how often each head is in the circuit over bootstrap resamples of the pairs.
4. Faithfulness of circuits at k/2, k and 2k (on the first 8 pairs by default, to keep the
   snapshot cheap enough for every save).

On disk (a directory written under a temporary name, then renamed; never half-written):
    snapshot.json   step, fingerprint, settings, graph shape, heads, faithfulness, metrics
    edges.parquet   upstream, downstream, score, in_circuit   (every edge, or the top N by |score|)
    nodes.parquet   node, kind, layer, head, score, in_circuit, stability
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparks.circuits.adapters import adapter_for
from sparks.circuits.attribution import attribute, completeness_gap, graph_of
from sparks.circuits.batches import PairBatch
from sparks.circuits.faithfulness import faithfulness
from sparks.circuits.graph import Circuit, Graph, find_circuit, head_stability
from sparks.circuits.metrics import NonFiniteError, choose_metric
from sparks.circuits.spec import DEFAULTS, SnapshotSpec
from sparks.circuits.steps import attribute_auto, steps_text
from sparks.files import atomic_dir

FORMAT = 1
CURVE = (0.5, 1.0, 2.0)  # faithfulness at these multiples of top_k


class SnapshotError(ValueError):
    """A snapshot directory that cannot be read; the message says which and why."""


@dataclass(frozen=True)
class FailedSnapshot:
    """A save whose snapshot could not be built (NaN/inf in the metric or its gradients): kept on
    disk and in the ledger as failed, so the run goes on and nobody mistakes it for a circuit."""

    step: int
    graph: Graph
    reason: str
    heads: tuple = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class CircuitSnapshot:
    step: int
    fingerprint: str
    settings: dict
    graph: Graph
    edge_scores: torch.Tensor  # [n_up, n_down], 0 on invalid (or unsaved) edges
    node_scores: torch.Tensor  # [n_up]
    circuit: Circuit
    head_stability: torch.Tensor  # [n_layers, n_heads]
    faithfulness: dict[int, float]  # circuit size k -> faithfulness
    m_clean: float
    m_corrupt: float
    seconds: float
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def heads(self) -> list[str]:
        return self.circuit.heads

    @property
    def n_edges(self) -> int:
        """Edges the model's graph has (a top_k above it keeps the whole graph)."""
        return int(self.graph.valid.sum())

    @property
    def circuit_faithfulness(self) -> float:
        """Faithfulness of the top-k circuit (the whole graph when top_k is above its edges)."""
        return self.faithfulness.get(min(self.settings["top_k"], self.n_edges), float("nan"))

    @property
    def completeness_error(self) -> float:
        """How far the first-order (IG) scores are from the real metric change (`completeness_gap`).
        More IG steps lower it; trained models often need more than untrained ones."""
        return completeness_gap(float(self.node_scores[0]), self.m_clean, self.m_corrupt)

    @property
    def steps_text(self) -> str:
        """The IG steps, as many as the pairs got: "27 IG steps", or with `steps: auto` where pairs
        ended at different counts "9-81 IG steps (pairs: 11 at 9, 3 at 27, 2 at 81)"."""
        by = self.settings.get("steps_by_pairs") or {}
        return steps_text(self.settings["steps"], {int(k): n for k, n in by.items()})

    def head_scores(self) -> torch.Tensor:
        """[n_layers, n_heads] node score of each head."""
        return self.node_scores[self.graph.head_index]


def model_fingerprint(model) -> str:
    """A short hash of the model's weights (same weights, same fingerprint)."""
    h = hashlib.blake2b(digest_size=12)
    for name, p in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def build_snapshot(
    model,
    batches: list[PairBatch],
    spec: SnapshotSpec = DEFAULTS,
    *,
    step: int = 0,
    n_boot: int = 50,
    faithfulness_pairs: int = 8,
    progress: bool = False,
    pairs: dict | None = None,
    fingerprint: str | None = None,
) -> CircuitSnapshot:
    """Attribute as `spec` says (its metric auto: chosen for `batches`), extract the circuit and
    measure it; `model` is left in the mode it was in.
    `pairs` (`pairs.pairs_record`): which pair set and file were measured, kept in the settings;
    `fingerprint`: the model's, when the caller hashed these weights already (another pair set of
    the same save).

    Faithfulness is measured on the first `faithfulness_pairs` pairs (patched forwards are the
    snapshot's most expensive part after attribution). `tokens_per_pass` bounds one pass (None:
    sized from free memory). Raises NonFiniteError when the model's numbers are NaN/inf."""
    t0 = time.perf_counter()
    metric = choose_metric(spec.metric, batches)
    steps, top_k, schedule, tokens_per_pass = (
        spec.steps,
        spec.top_k,
        spec.schedule,
        spec.tokens_per_pass,
    )
    was_training = model.training
    model.eval()
    try:
        graph = graph_of(adapter_for(model))
        keep = max(1, faithfulness_pairs)
        auto: dict[str, Any] = {}
        if steps == "auto":
            attr, choice = attribute_auto(
                model, batches, spec.with_(metric=metric), progress=progress, keep_reference=keep
            )
            steps = choice.steps
            auto = {
                "steps_auto": True,
                "steps_tried": list(choice.tried),
                "steps_tolerance": spec.steps_tolerance,
                "steps_capped": choice.capped,
                # pairs refine one by one: the count each ended at (IG points run = their sum)
                "steps_by_pairs": {str(k): v for k, v in choice.pairs_at.items()},
            }
        else:
            attr = attribute(
                model, batches, steps=steps, metric=metric, schedule=schedule,
                tokens_per_pass=tokens_per_pass, progress=progress, keep_reference=keep,
            )  # fmt: skip
        assert attr.reference is not None  # kept: keep_reference >= 1
        scores = attr.scores
        circuit = find_circuit(graph, scores, top_k=top_k)
        n_valid = int(graph.valid.sum())
        ks = sorted({min(n_valid, max(1, round(top_k * f))) for f in CURVE})
        faith = faithfulness(
            model,
            [],
            [find_circuit(graph, scores, top_k=k).edges for k in ks],
            metric=metric,
            reference=attr.reference,
            tokens_per_pass=tokens_per_pass,
        )
        stability = head_stability(graph, attr.per_pair, top_k=top_k, n_boot=n_boot)
    finally:
        model.train(was_training)
    n_pairs = int(attr.per_pair.shape[0])
    return CircuitSnapshot(
        step=step,
        fingerprint=fingerprint or model_fingerprint(model),
        settings={
            "steps": steps,
            "metric": metric,
            "top_k": top_k,
            "n_pairs": n_pairs,
            "n_boot": n_boot,
            "faithfulness_pairs": int(attr.reference.batch.last.shape[0]),
            "schedule": schedule,
            **auto,
            **({"pairs": pairs} if pairs else {}),
        },
        graph=graph,
        edge_scores=scores,
        node_scores=attr.node_scores,
        circuit=circuit,
        head_stability=stability,
        faithfulness=dict(zip(ks, faith, strict=True)),
        m_clean=float(attr.m_clean.mean()),
        m_corrupt=float(attr.m_corrupt.mean()),
        seconds=time.perf_counter() - t0,
    )


def write_failed_snapshot(failed: FailedSnapshot, out_dir: str | Path) -> Path:
    """Record a failed snapshot in `out_dir` (atomically): its step, graph shape and reason."""
    g = failed.graph
    meta = {
        "format": FORMAT,
        "step": failed.step,
        "failed": failed.reason,
        "graph": {"n_layers": g.n_layers, "n_heads": g.n_heads, "n_kv_heads": g.n_kv_heads},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    with atomic_dir(Path(out_dir)) as tmp:
        (tmp / "snapshot.json").write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def build_or_fail(model, batches: list[PairBatch], spec: SnapshotSpec, *, step: int, **kwargs):
    """`build_snapshot`, or a FailedSnapshot saying which pass was not finite."""
    try:
        return build_snapshot(model, batches, spec, step=step, **kwargs)
    except NonFiniteError as e:
        return FailedSnapshot(step, graph_of(adapter_for(model)), str(e))


def save_snapshot(snap, out_dir: str | Path) -> Path:
    """Write a CircuitSnapshot or a FailedSnapshot into `out_dir`."""
    if isinstance(snap, FailedSnapshot):
        return write_failed_snapshot(snap, out_dir)
    return write_snapshot(snap, out_dir)


def write_snapshot(
    snap: CircuitSnapshot, out_dir: str | Path, *, max_edges: int | None = None
) -> Path:
    """Write `snap` into `out_dir` atomically; `max_edges` keeps only the top N edges by |score|
    (circuit edges always kept). Refuses an existing `out_dir`."""
    import pandas as pd

    g = snap.graph
    valid = g.valid.clone()
    if max_edges is not None and max_edges < int(valid.sum()):
        top = torch.zeros_like(valid).flatten()
        top[snap.edge_scores.abs().masked_fill(~valid, -1).flatten().topk(max_edges).indices] = True
        valid &= top.view_as(valid) | snap.circuit.edges
    u, v = valid.nonzero(as_tuple=True)
    edges = pd.DataFrame(
        {
            "upstream": [g.up_names[i] for i in u.tolist()],
            "downstream": [g.down_names[j] for j in v.tolist()],
            "score": snap.edge_scores[u, v].numpy(),
            "in_circuit": snap.circuit.edges[u, v].numpy(),
        }
    )
    stab = torch.full((g.n_up,), float("nan"), dtype=snap.head_stability.dtype)
    stab[g.head_index.flatten()] = snap.head_stability.flatten()
    kinds = ["input"] + ["head" if n[0] == "L" else "mlp" for n in g.up_names[1:]]
    layers = [-1] + [int(n[1:].split("H")[0]) for n in g.up_names[1:]]
    heads = [-1] + [int(n.split("H")[1]) if "H" in n else -1 for n in g.up_names[1:]]
    nodes = pd.DataFrame(
        {
            "node": g.up_names,
            "kind": kinds,
            "layer": layers,
            "head": heads,
            "score": snap.node_scores.numpy(),
            "in_circuit": snap.circuit.nodes.numpy(),
            "stability": stab.numpy(),
        }
    )
    meta = {
        "format": FORMAT,
        "step": snap.step,
        "fingerprint": snap.fingerprint,
        "settings": snap.settings,
        "graph": {"n_layers": g.n_layers, "n_heads": g.n_heads, "n_kv_heads": g.n_kv_heads},
        "heads": snap.heads,
        "faithfulness": {str(k): v for k, v in snap.faithfulness.items()},
        "m_clean": snap.m_clean,
        "m_corrupt": snap.m_corrupt,
        "completeness_error": snap.completeness_error,
        "seconds": snap.seconds,
        "created": snap.created,
        "edges_saved": len(edges),
        "edges_total": int(g.valid.sum()),
    }
    with atomic_dir(Path(out_dir)) as tmp:
        edges.to_parquet(tmp / "edges.parquet", index=False)
        nodes.to_parquet(tmp / "nodes.parquet", index=False)
        (tmp / "snapshot.json").write_text(json.dumps(meta, indent=2))
    return Path(out_dir)


def read_snapshot(path: str | Path) -> CircuitSnapshot | FailedSnapshot:
    """Read a snapshot directory written by `write_snapshot` (scores are restored exactly), or
    the FailedSnapshot recorded for a save whose snapshot could not be built."""
    import pandas as pd

    path = Path(path)
    meta_file = path / "snapshot.json"
    if not meta_file.is_file():
        raise SnapshotError(
            f"{path} is not a circuit snapshot (no snapshot.json): pass a snapshot directory"
        )
    meta = json.loads(meta_file.read_text())
    g = Graph(**meta["graph"])
    if "failed" in meta:
        return FailedSnapshot(meta["step"], g, meta["failed"])
    edges = pd.read_parquet(path / "edges.parquet")
    nodes = pd.read_parquet(path / "nodes.parquet")
    up = {n: i for i, n in enumerate(g.up_names)}
    down = {n: i for i, n in enumerate(g.down_names)}
    u = torch.tensor([up[n] for n in edges["upstream"]], dtype=torch.long)
    v = torch.tensor([down[n] for n in edges["downstream"]], dtype=torch.long)
    score_t = torch.from_numpy(edges["score"].to_numpy().copy())
    scores = torch.zeros(g.n_up, g.n_down, dtype=score_t.dtype)
    scores[u, v] = score_t
    in_c = torch.zeros(g.n_up, g.n_down, dtype=torch.bool)
    in_c[u, v] = torch.from_numpy(edges["in_circuit"].to_numpy().copy())
    stab = torch.from_numpy(nodes["stability"].to_numpy().copy())
    return CircuitSnapshot(
        step=meta["step"],
        fingerprint=meta["fingerprint"],
        settings=meta["settings"],
        graph=g,
        edge_scores=scores,
        node_scores=torch.from_numpy(nodes["score"].to_numpy().copy()),
        circuit=Circuit(
            in_c, torch.from_numpy(nodes["in_circuit"].to_numpy().copy()), meta["heads"]
        ),
        head_stability=stab[g.head_index],
        faithfulness={int(k): v for k, v in meta["faithfulness"].items()},
        m_clean=meta["m_clean"],
        m_corrupt=meta["m_corrupt"],
        seconds=meta["seconds"],
        created=meta["created"],
    )

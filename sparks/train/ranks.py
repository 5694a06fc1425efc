"""Rank roles: who does what when a run spans several processes (`accelerate launch`, `torchrun`).

Every rank trains. Everything else a run does once (the world, the pairs, the MLflow run, the base
snapshot, evaluations, the ledger and the summary) happens on the main process (global rank 0),
and the other ranks wait for it. `Ranks` is the one place that knows this:

1. `current_ranks(timeout)` joins the process group a launcher describes (RANK, WORLD_SIZE,
   MASTER_ADDR in the environment), before TRL or accelerate do: gloo on CPU, NCCL for CUDA
   tensors plus gloo for CPU ones on GPUs. accelerate and the Trainer then use this group as it is.
2. `main_then_all(fn)`: the main process runs `fn` first (e.g. builds the world cache), then the
   others run it and find its result on disk. `on_main(fn)`: only the main process runs `fn`; the
   others get its return value. A failure on the main process is sent to the others, which raise
   at once instead of waiting for a collective that never comes.
3. The waits go over a gloo group of their own whose timeout (`distributed.timeout_minutes`) is
   sized for the main process's longest serial work (a snapshot, an evaluation), so a NCCL
   watchdog never fires while the main process is busy and nothing waits forever.

One process (no launcher) is `Ranks()`: every call runs `fn` at once, no waits.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal, TypeVar, overload

from sparks.errors import UserError

T = TypeVar("T")


class RankFailure(UserError):
    """The main process failed at a step the other ranks were waiting for."""


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    group: Any = field(default=None, repr=False)  # the gloo group the waits go over

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def label(self) -> str:
        return f"rank {self.rank}/{self.world_size}"

    def _broadcast(self, outcome: tuple[bool, Any] | None) -> tuple[bool, Any]:
        import torch.distributed as dist

        box: list[Any] = [outcome]
        dist.broadcast_object_list(box, src=0, group=self.group)
        return box[0]

    @overload
    def on_main(self, fn: Callable[[], T], what: str, *, share: Literal[True] = True) -> T: ...
    @overload
    def on_main(self, fn: Callable[[], T], what: str, *, share: Literal[False]) -> T | None: ...
    def on_main(self, fn: Callable[[], T], what: str, *, share: bool = True) -> T | None:
        """Run `fn` on the main process only while the others wait; with `share`, every rank
        returns its (picklable) value, else the others get None."""
        if not self.distributed:
            return fn()
        if self.is_main:
            try:
                value = fn()
            except BaseException as e:
                self._broadcast((False, _portable(e)))  # the others stop waiting, then raise
                raise
            self._broadcast((True, value if share else None))
            return value
        ok, value = self._broadcast(None)
        if not ok:
            raise RankFailure(f"{self.label()}: the main process failed at {what}: {value}")
        return value

    def main_then_all(self, fn: Callable[[], T], what: str) -> T:
        """The main process runs `fn` first; then every other rank runs it and finds on disk what
        the main process built (a cache, a file). Each rank returns its own result."""
        if not self.distributed:
            return fn()
        value = self.on_main(fn, what, share=False)
        if self.is_main:
            return value  # type: ignore[return-value]  # the main process's own value
        return fn()


def _portable(e: BaseException) -> str:
    """What crosses to the other ranks: the error's one-line text (exceptions need not pickle)."""
    first = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {first}"[:500]


def current_ranks(timeout_minutes: float = 60.0) -> Ranks:
    """This process's place in the launch the environment describes, joining its process group
    (and a gloo group for the waits) if nobody has yet; `Ranks()` when there is no launcher."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Ranks()
    import torch
    import torch.distributed as dist

    timeout = timedelta(minutes=timeout_minutes)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            backend = "cuda:nccl,cpu:gloo"  # CPU tensors (state-dict gathers, objects) over gloo
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend, timeout=timeout)
    group = dist.new_group(backend="gloo", timeout=timeout)
    return Ranks(dist.get_rank(), dist.get_world_size(), local_rank, group)


def leave_process_groups() -> None:
    """End a rank of a launch cleanly. A rank can abort at interpreter teardown when gloo's threads
    outlive Python ("terminate called without an active exception", exit -6: seen in 2-rank CI
    after a completed stage, its summary then lost in the unflushed stdout). So on success the
    rank leaves its process groups, flushes what it printed, and exits without the teardown: call
    it last, once everything is written (`sparks train` after its summary). Only on success:
    after an error the other ranks may never get here. Without a process group it returns."""
    import sys

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

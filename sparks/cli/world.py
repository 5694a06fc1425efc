"""`sparks world build`: the embedded world (tokenizer, tiny model, tasks, pairs)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from sparks.cli.app import world_app
from sparks.cli.options import field_option
from sparks.config import WorldSettings


@world_app.command("build", help="build tokenizer, tiny model, tasks and pairs into OUT_DIR")
def build(
    out_dir: Path = typer.Argument(..., metavar="OUT_DIR"),
    seed: int = field_option(WorldSettings, "seed", "--seed"),
    pretrain_steps: int = field_option(
        WorldSettings,
        "pretrain_steps",
        "--pretrain-steps",
        metavar="N",
        help="pretraining steps of the base model (default: the shipped base's; 0: a random "
        "network); a base not shipped is trained once into OUT_DIR/../bases",
    ),
) -> None:
    from sparks.world.build import WorldSpec, build_world
    from sparks.world.pretrain import PretrainSpec

    world = build_world(out_dir, WorldSpec(seed=seed, pretrain=PretrainSpec(steps=pretrain_steps)))
    base = json.loads((world.root / "world.json").read_text())["base"]
    skill = ", ".join(f"{k} {v:.2f}" for k, v in base.get("plain_skill", {}).items())
    print(
        f"world ready in {world.root}: model in {world.model_dir}, tasks in {world.root / 'tasks'}, "
        f"pairs in {world.pairs_path}\nbase {base['key']}: pretrained {base['pretrain']['steps']} "
        f"steps (final loss {base['training'].get('loss_last', float('nan')):.3f}); greedy accuracy "
        f"in its own plain format: {skill or 'n/a'}"
    )

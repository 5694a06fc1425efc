"""Rebuild the world's shipped base model from scratch and check it is identical, or ship it.

    python tools/rebuild_base.py          # pretrain into a temporary directory (about 4-5 min on
                                          # 2 cores), compare every tensor with the shipped base
    python tools/rebuild_base.py --ship   # the same, then copy it into sparks/world/bases/

Run it after changing the corpus, the model shape or the pretraining recipe (bump
`sparks.world.pretrain.RECIPE` when the change does not show in the spec): the test suite refuses
a shipped base whose corpus fingerprint no longer matches the code's.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def main() -> int:
    from safetensors.torch import load_file

    from sparks.world.build import WorldSpec
    from sparks.world.pretrain import MANIFEST, SHIPPED, build_base, ship
    from sparks.world.tasks import corpus
    from sparks.world.tokenizer import train_tokenizer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ship", action="store_true", help="copy the rebuilt base into the package")
    args = ap.parse_args()
    spec = WorldSpec()
    with tempfile.TemporaryDirectory() as tmp:
        built = build_base(
            Path(tmp), spec.seed, spec.vocab_size, spec.model, spec.pretrain,
            lambda: train_tokenizer(corpus(spec.seed), vocab_size=spec.vocab_size),
            use_shipped=False,
        )  # fmt: skip
        info = json.loads((built / MANIFEST).read_text())
        print(
            f"built {info['key']} in {info['seconds']} s: plain-format skill {info['plain_skill']}"
        )
        shipped = SHIPPED / info["key"]
        if (shipped / "model.safetensors").is_file():
            a = load_file(str(built / "model.safetensors"))
            b = load_file(str(shipped / "model.safetensors"))
            same = a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
            tok_same = (built / "tokenizer.json").read_text() == (
                shipped / "tokenizer.json"
            ).read_text()
            print(f"identical to the shipped base: weights {same}, tokenizer {tok_same}")
        else:
            same = False
            print(f"no shipped base {info['key']} yet")
        if args.ship:
            print(f"shipped: {ship(built)}")
            return 0
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

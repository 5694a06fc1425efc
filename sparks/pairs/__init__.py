"""Attribution pairs for any model: built with the model's own tokenizer and chat template.

`build_pairs` is the library call behind `sparks pairs`, the `build-pairs` task of the
`post-train` flow and the `snapshot.pairs` config section. See `sparks.pairs.build`.
"""

from sparks.pairs.build import MODES, PairsReport, build_pairs, pairs_for_run

__all__ = ["MODES", "PairsReport", "build_pairs", "pairs_for_run"]

"""Ablation and scaling studies: edited checkpoints (`interventions.py`), a study as a whole
(`ablation.py`), its problem-by-problem reading (`study.py`: difficulty, flips, failure modes from
`failures.py` and `equations.py`), the random-head control (`control.py`) and the sample viewer
(`viewer.py`)."""

"""A training run as a whole: its plan (`plan.py`, the dry run), its steps in order
(`pipeline.py`, `TrainingRun`), the engine behind `sparks run` and `make demo` (`engine.py`), and
nightly runs (`nights.py`)."""

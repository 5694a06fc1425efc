"""Math problems shared by training, evaluation and pairs: benchmark files in their public
layouts (`benchmarks.py`) and the final answer's extraction and verification (`grading.py`)."""

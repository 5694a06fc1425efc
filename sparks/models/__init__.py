"""Models: loading checkpoints and tokenizers by local path or hub id with one-line errors
(`loading.py`), and real architectures' shapes for estimates without a download (`shapes.py`)."""

"""A readable console for long runs: progress lines on the terminal, library chatter in a log file.

`quiet_console(path)` sends Python warnings and the warnings and info of the libraries sparks drives
(transformers, TRL, Prefect, MLflow, vLLM, ...) to `path`, and turns off transformers' per-file
progress bars (loading and writing weights). sparks' own `[sparks]` lines and the one progress bar
per training stage stay on the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

LIBRARIES = (
    "transformers",
    "trl",
    "accelerate",
    "datasets",
    "huggingface_hub",
    "torch",
    "mlflow",
    "prefect",
    "alembic",
    "vllm",
    "httpx",
    "py.warnings",
)


def quiet_console(path: Path) -> Path:
    """Route library warnings and logs to `path` (appended); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, delay=True)  # no file until there is a line
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.captureWarnings(True)
    for name in LIBRARIES:
        log = logging.getLogger(name)
        for h in list(log.handlers):
            if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                log.removeHandler(h)
        if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in log.handlers):
            log.addHandler(handler)
        log.propagate = False
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")  # vLLM keeps to these handlers
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.disable_default_handler()
    except ImportError:
        pass
    return path


def say(line: str) -> None:
    """One console line, above the stage's progress bar when one is showing; inside a Prefect
    flow or task run, also a line of that run's log (the Logs tab of the Prefect UI)."""
    from tqdm import tqdm

    tqdm.write(line)
    _to_prefect(line)


def _to_prefect(line: str) -> None:
    if "prefect" not in sys.modules:  # never imported by sparks for this: not in a flow run
        return
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    from prefect.logging import get_run_logger

    try:
        get_run_logger().info(line.removeprefix("[sparks] "))
    except Exception:  # noqa: BLE001  (the console has the line; a log upload must never stop a run)
        pass

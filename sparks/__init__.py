"""sparks: circuit snapshots of attention heads at every post-training checkpoint.

The package follows the data's path: world -> train -> circuits -> track -> evaluate -> log.
Importing `sparks` is light; heavy libraries (torch, transformers, vllm, mlflow) load where used.
"""

__version__ = "0.1.0"

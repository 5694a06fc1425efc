"""The reliability tests' shared working directory: its world cache holds the session's world, so
each subprocess run finds it instead of building one."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world_cache(world, tmp_path_factory):
    from sparks.config import WorldSettings

    cwd = tmp_path_factory.mktemp("reliability")
    spec = world.spec()
    s = WorldSettings(**{k: spec[k] for k in ("seed", "n_train", "n_test", "n_pairs")})
    name = f"v3-seed{s.seed}-train{s.n_train}-test{s.n_test}-pairs{s.n_pairs}"
    (cwd / "artifacts" / "worlds").mkdir(parents=True)
    (cwd / "artifacts" / "worlds" / name).symlink_to(world.root, target_is_directory=True)
    return cwd

"""The reliability tests' shared working directory: its world cache holds the session's world, so
each subprocess run finds it instead of building one."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def world_cache(world, tmp_path_factory):
    from sparks.config import WorldSettings
    from sparks.world.build import spec_of, world_name

    cwd = tmp_path_factory.mktemp("reliability")
    spec = world.spec()
    s = WorldSettings(**{k: spec[k] for k in ("seed", "n_train", "n_test", "n_pairs")})
    name = world_name(spec_of(s))  # the name sparks looks for, whatever its version
    (cwd / "artifacts" / "worlds").mkdir(parents=True)
    (cwd / "artifacts" / "worlds" / name).symlink_to(world.root, target_is_directory=True)
    return cwd

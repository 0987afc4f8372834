"""rgb_array frames, episode GIFs, and the rendering example."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from marl.envs import cooperative_navigation_v0, save_episode_gif, treasure_collection_v0

ROOT = Path(__file__).resolve().parents[3]
PUBLIC_MODULES = [
    "marl.envs.cooperative_navigation_v0",
    "marl.envs.treasure_collection_v0",
    "marl.envs.vector",
    "marl.envs.registry",
    "marl.envs.rendering",
]


@pytest.mark.parametrize("module", [cooperative_navigation_v0, treasure_collection_v0])
def test_render_returns_frames_that_change(module):
    env = module.parallel_env(render_mode="rgb_array", render_size=128)
    env.reset(seed=0)
    first = env.render()
    assert first.shape == (128, 128, 3) and first.dtype == np.uint8
    for _ in range(5):
        env.step({a: 2 for a in env.agents})
    assert not np.array_equal(first, env.render())


def test_render_without_mode_warns_and_returns_none():
    env = cooperative_navigation_v0.parallel_env()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render mode"):
        assert env.render() is None


@pytest.mark.parametrize("module", [cooperative_navigation_v0, treasure_collection_v0])
def test_save_episode_gif(module, tmp_path):
    env = module.parallel_env(render_mode="rgb_array", render_size=96, max_cycles=6)
    path = save_episode_gif(env, tmp_path / "episode.gif", seed=3)
    with Image.open(path) as img:
        assert img.n_frames == 7 and img.size == (96, 96)


def test_render_example_writes_one_gif_per_environment(tmp_path):
    script = ROOT / "examples" / "render_envs.py"
    subprocess.run(
        [sys.executable, str(script), "--out-dir", str(tmp_path), "--max-cycles", "5", "--size", "64"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    gifs = sorted(p.name for p in tmp_path.glob("*.gif"))
    assert gifs == ["cooperative_navigation.gif", "treasure_collection.gif"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_docstring_examples_run(name):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0

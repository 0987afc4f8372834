"""Frames and GIFs of the particle environments, drawn with PIL (no window, no pygame).

Examples
--------
>>> from marl.envs import cooperative_navigation_v0
>>> from marl.envs.rendering import record_episode
>>> env = cooperative_navigation_v0.parallel_env(render_mode="rgb_array", max_cycles=3)
>>> frames = record_episode(env, seed=0)
>>> len(frames), frames[0].shape, frames[0].dtype
(4, (400, 400, 3), dtype('uint8'))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_frame", "record_episode", "save_gif", "save_episode_gif"]

_SUPERSAMPLE = 2
_BACKGROUND = (255, 255, 255)


def draw_frame(
    circles: Sequence[tuple[Any, float, tuple[int, int, int]]],
    size: int = 400,
    labels: Sequence[tuple[Any, str]] = (),
    min_range: float = 1.05,
) -> np.ndarray:
    """Return an RGB frame of filled circles in world coordinates.

    Parameters
    ----------
    circles : sequence of (centre (2,), radius, (r, g, b))
        Drawn in order (later ones on top), with a thin black outline.
    size : int
        Frame side in pixels.
    labels : sequence of (centre (2,), text)
        Short texts drawn centred at world positions.
    min_range : float
        The view spans at least [-min_range, min_range]^2 and grows to keep every circle inside.

    Returns
    -------
    ndarray, uint8, shape (size, size, 3)
    """
    cam = float(min_range)
    for c, r, _ in circles:
        cam = max(cam, float(abs(c[0])) + r + 0.05, float(abs(c[1])) + r + 0.05)
    s = size * _SUPERSAMPLE
    scale = s / (2.0 * cam)
    img = Image.new("RGB", (s, s), _BACKGROUND)
    draw = ImageDraw.Draw(img)

    def to_px(c: Any) -> tuple[float, float]:
        return (float(c[0]) + cam) * scale, (cam - float(c[1])) * scale

    for c, r, color in circles:
        x, y = to_px(c)
        rp = max(r * scale, 1.5)
        draw.ellipse([x - rp, y - rp, x + rp, y + rp], fill=tuple(int(v) for v in color), outline=(0, 0, 0),
                     width=_SUPERSAMPLE)
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if labels:
        draw = ImageDraw.Draw(img)
        for c, text in labels:
            x, y = to_px(c)
            draw.text((x / _SUPERSAMPLE, y / _SUPERSAMPLE), text, fill=(255, 255, 255), anchor="mm")
    return np.asarray(img, dtype=np.uint8)


def record_episode(
    env: Any,
    policy: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    seed: int | None = None,
    max_steps: int | None = None,
) -> list[np.ndarray]:
    """Run one episode of a PettingZoo ParallelEnv created with ``render_mode="rgb_array"``; return its frames.

    Parameters
    ----------
    env : ParallelEnv
        Any parallel environment whose ``render()`` returns RGB arrays.
    policy : callable, optional
        ``policy(observations, env) -> {agent: action}``; uniformly random actions when omitted (the action
        spaces are seeded from ``seed``).
    seed : int, optional
        Passed to ``env.reset``.
    max_steps : int, optional
        Stop after this many steps even if the episode goes on.

    Returns
    -------
    list of ndarray
        The first frame after reset, then one frame per step.
    """
    obs, _ = env.reset(seed=seed)
    if policy is None and seed is not None:
        for i, agent in enumerate(env.possible_agents):
            env.action_space(agent).seed(seed + i)
    frames = [env.render()]
    steps = 0
    while env.agents and (max_steps is None or steps < max_steps):
        if policy is None:
            actions = {a: env.action_space(a).sample() for a in env.agents}
        else:
            actions = policy(obs, env)
        obs, _, _, _, _ = env.step(actions)
        frames.append(env.render())
        steps += 1
    return frames


def save_gif(frames: Sequence[np.ndarray], path: str | Path, fps: float = 10.0) -> Path:
    """Write RGB frames to an animated GIF (looping) and return its path."""
    if not frames:
        raise ValueError("frames must not be empty")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=int(round(1000.0 / fps)), loop=0,
                   optimize=False)
    return path


def save_episode_gif(
    env: Any,
    path: str | Path,
    policy: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
    seed: int | None = None,
    fps: float = 10.0,
    max_steps: int | None = None,
) -> Path:
    """Record one episode with :func:`record_episode` and write it to ``path`` as a GIF; return the path."""
    return save_gif(record_episode(env, policy=policy, seed=seed, max_steps=max_steps), path, fps=fps)

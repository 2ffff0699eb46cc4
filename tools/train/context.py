"""The engine's context policy (engine/src/context_policy.cpp) in numpy, for training: for every chunk of an
episode, which earlier chunks it attends to and in which slot order. Training and inference must see the
same structure: window W of recent chunks, then up to M recalled older chunks (chunk 0 first, then the best
field-of-view overlap with the chunk's pose, ties to the older), recalled listed oldest first, before the
window.
"""
from __future__ import annotations

import math
from typing import List, Tuple

import numpy as np

_DEG = np.float32(0.017453292519943295)


def _basis(pose):
    yaw, pitch = np.float32(pose[3]) * _DEG, np.float32(pose[4]) * _DEG
    sy, cy, sp, cp = np.sin(yaw), np.cos(yaw), np.sin(pitch), np.cos(pitch)
    return dict(f=(sy * cp, sp, cy * cp), r=(cy, -sy), u=(-sy * sp, cp, -cy * sp))


def fov_overlap(a, b, hfov_deg: float) -> float:
    """Fraction of a 5x5 grid of directions × depths {2, 5, 10, 20} in a's frustum that b sees (as the engine)."""
    tan_half = math.tan(0.5 * hfov_deg * math.pi / 180.0)
    ba, bb = _basis(a), _basis(b)
    seen = total = 0
    for iy in range(5):
        for ix in range(5):
            px = tan_half * (2.0 * (ix + 0.5) / 5 - 1.0)
            py = tan_half * (2.0 * (iy + 0.5) / 5 - 1.0)
            for depth in (2.0, 5.0, 10.0, 20.0):
                wx = a[0] + depth * (ba["f"][0] + px * ba["r"][0] + py * ba["u"][0])
                wy = a[1] + depth * (ba["f"][1] + py * ba["u"][1])
                wz = a[2] + depth * (ba["f"][2] + px * ba["r"][1] + py * ba["u"][2])
                dx, dy, dz = wx - b[0], wy - b[1], wz - b[2]
                zf = dx * bb["f"][0] + dy * bb["f"][1] + dz * bb["f"][2]
                total += 1
                if zf <= 0.05 or zf > 25.0:
                    continue
                xr = dx * bb["r"][0] + dz * bb["r"][1]
                yu = dx * bb["u"][0] + dy * bb["u"][1] + dz * bb["u"][2]
                if abs(xr) <= tan_half * zf and abs(yu) <= tan_half * zf:
                    seen += 1
    return seen / total


def choose_context(current: int, chunk_poses, window: int, recall: int, hfov_deg: float,
                   recall_first: bool = True) -> Tuple[List[int], List[int]]:
    """chunk_poses[i] = pose of chunk i's last frame (x, y, z, yaw, pitch); all chunks < current are stored.
    Returns (context in slot order, recalled)."""
    window_chunks = [i for i in range(max(0, current - window), current)]
    candidates = [i for i in range(0, max(0, current - window))]
    recalled, slots = [], recall
    if slots > 0 and recall_first and candidates and candidates[0] == 0:
        recalled.append(0)
        candidates = candidates[1:]
        slots -= 1
    if slots > 0 and candidates:
        scored = [(fov_overlap(chunk_poses[current], chunk_poses[i], hfov_deg), i) for i in candidates]
        scored.sort(key=lambda s: (-s[0], s[1]))
        recalled += [i for _, i in scored[:slots]]
    recalled.sort()
    return recalled + window_chunks, recalled


def episode_contexts(chunk_poses: np.ndarray, window: int, recall: int, hfov_deg: float) -> List[List[int]]:
    """Context lists for every chunk of one episode whose chunk poses are given (chunk 0 included)."""
    return [choose_context(c, chunk_poses, window, recall, hfov_deg)[0] for c in range(len(chunk_poses))]


def context_size(current: int, window: int, recall: int) -> int:
    """How many chunks chunk `current` attends to when every earlier chunk is stored (depends on the index only)."""
    return min(window, current) + min(recall, max(0, current - window))

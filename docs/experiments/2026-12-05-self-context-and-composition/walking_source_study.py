"""Does the flow source carry the walk into every frame of a chunk? (issue 19 item 4; CPU, no model)

The v2 model walks at a chunk's first frame pair and slows within the chunk (eval --mode quality, step 3154: zoom
per pair 1.0126, 1.0087, 1.0085, 1.0071 against the simulator's 1.0144-1.0160). Its flow source is the previous
chunk's last frame moved to each frame's camera (model.warp_previous: turned, and walked over a ground plane
`warp_eye_height` below the eye). This measures the source's own zoom per frame pair on simulator episodes, with
the estimator of the evaluation (eval/src/image_metrics.cpp estimate_zoom: the middle two thirds, zoom about the
centre in steps of 0.002, parabolic refinement), on the pairs where the camera walks straight forward or back:
  pair 0: the previous chunk's last frame -> frame 0 (the simulator's) or -> source 0 (the warp's)
  pair k: frame k-1 -> frame k, or source k-1 -> source k
If the source zooms like the simulator in every pair, the slow-down is the model's, not its source's.

    python3 walking_source_study.py DATASET   # kvworld-sim dataset --width 256 --height 256 (walking episodes)
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tools", "train"))
import model as M  # noqa: E402


def luma(frames: np.ndarray) -> torch.Tensor:
    """uint8 [n, H, W, 3] -> luma [n, H, W] float64 (the eval's weights)."""
    f = torch.from_numpy(frames.astype(np.float64))
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def estimate_zoom(a: torch.Tensor, b: torch.Tensor, steps: int = 30, step: float = 0.002) -> np.ndarray:
    """a, b luma [n, H, W] -> the zoom s (per pair) for which a scaled by s about the centre best matches b over
    the middle two thirds (as eval/src/image_metrics.cpp)."""
    n, h, w = a.shape
    cx, cy = (w - 1) / 2.0, (h - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(h // 6, 5 * h // 6, dtype=torch.float64),
                            torch.arange(w // 6, 5 * w // 6, dtype=torch.float64), indexing="ij")
    target = b[:, h // 6:5 * h // 6, w // 6:5 * w // 6]
    err = []
    for k in range(-steps, steps + 1):
        s = 1.0 + step * k
        sx, sy = cx + (xs - cx) / s, cy + (ys - cy) / s
        grid = torch.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], dim=-1)[None].expand(n, -1, -1, -1)
        v = F.grid_sample(a[:, None], grid, mode="bilinear", align_corners=True)[:, 0]
        err.append(((target - v) ** 2).mean(dim=(1, 2)))
    err = torch.stack(err, dim=1).numpy()  # [n, 2 steps + 1]
    best = err.argmin(axis=1)
    out = np.empty(n)
    for i in range(n):
        j = best[i]
        vertex = 0.0
        if 0 < j < 2 * steps:
            e0, e1, e2 = err[i, j - 1], err[i, j], err[i, j + 1]
            den = e0 - 2 * e1 + e2
            vertex = 0.5 * (e0 - e2) / den if den > 0 else 0.0
        out[i] = 1.0 + step * (j - steps + vertex)
    return out


def main():
    data = sys.argv[1]
    meta = json.load(open(os.path.join(data, "meta.json")))
    E, T, H, W = meta["episodes"], meta["frames"], meta["height"], meta["width"]
    frames = np.memmap(os.path.join(data, "frames.u8"), dtype=np.uint8, mode="r", shape=(E, T, H, W, 3))
    actions = np.fromfile(os.path.join(data, "actions.f32"), dtype=np.float32).reshape(E, T, 5)
    poses = np.fromfile(os.path.join(data, "poses.f32"), dtype=np.float32).reshape(E, T, 5)
    cfg = json.load(open(os.path.join(HERE, "..", "..", "..", "config", "model-v2.json")))
    hfov, eye = cfg["motion"]["hfov_deg"], cfg["sampler"]["warp_eye_height"]
    Fr = cfg["chunk_frames"]
    walks = {"forward": 1.0, "back": -1.0}
    sim_z = {w: [[] for _ in range(Fr)] for w in walks}
    src_z = {w: [[] for _ in range(Fr)] for w in walks}
    for e in range(E):
        for c in range(1, T // Fr):
            first = c * Fr
            acts = actions[e, first:first + Fr]
            # walking straight forward or back, without turning or strafing, in every frame of the chunk
            straight = (np.all(np.abs(acts[:, 3]) < 1e-3) and np.all(np.abs(acts[:, 1]) < 1e-3)
                        and np.all(np.abs(acts[:, 4]) < 1e-3))
            walk = next((w for w, sign in walks.items() if np.all(sign * acts[:, 0] > 0.5)), None)
            if not straight or walk is None:
                continue
            prev = frames[e, first - 1]
            src_pose, dst = poses[e, first - 1].astype(np.float64), poses[e, first:first + Fr].astype(np.float64)
            dyaw = dst[:, 3] - src_pose[3]
            dyaw -= 360.0 * np.round(dyaw / 360.0)
            dx, dz = dst[:, 0] - src_pose[0], dst[:, 2] - src_pose[2]
            yaw = np.radians(dst[:, 3])
            fwd = dx * np.sin(yaw) + dz * np.cos(yaw)
            right = dx * np.cos(yaw) - dz * np.sin(yaw)
            x = torch.from_numpy(prev.astype(np.float32) / 127.5 - 1.0)[None]  # [1, H, W, 3]
            row = lambda v: torch.tensor(v, dtype=torch.float32)[None]  # noqa: E731  [1, Fr]
            warped = M.warp_previous(x, row(dyaw), torch.tensor([float(src_pose[4])]), row(dst[:, 4]), hfov,
                                     row(fwd), row(right), eye)[0]  # [Fr, H, W, 3]
            src = ((warped.clamp(-1, 1) + 1) * 127.5).round().numpy().astype(np.uint8)
            sim = np.asarray(frames[e, first:first + Fr])
            a_sim = luma(np.concatenate([prev[None], sim[:-1]]))
            a_src = luma(np.concatenate([prev[None], src[:-1]]))
            zs, zw = estimate_zoom(a_sim, luma(sim)), estimate_zoom(a_src, luma(src))
            for k in range(Fr):
                if walks[walk] * (zs[k] - 1) > 0.004:  # the eval's threshold: the simulator's own zoom shows the walk
                    sim_z[walk][k].append(zs[k])
                    src_z[walk][k].append(zw[k])
    print(f"dataset {data}: {E} episodes x {T} frames at {W}x{H}")
    print("walk     pair  pairs  simulator zoom  source zoom  source / simulator (zoom - 1)")
    rows = []
    for walk in walks:
        for k in range(Fr):
            n = len(sim_z[walk][k])
            if n == 0:
                continue
            s, w = float(np.mean(sim_z[walk][k])), float(np.mean(src_z[walk][k]))
            rows.append({"walk": walk, "pair": k, "pairs": n, "simulator": s, "source": w,
                         "fraction": (w - 1) / (s - 1)})
            print(f"{walk:8s} {k:4d} {n:6d} {s:15.4f} {w:12.4f} {100 * (w - 1) / (s - 1):12.0f}%")
    json.dump(rows, open(os.path.join(HERE, "walking_source_study.json"), "w"), indent=1)


if __name__ == "__main__":
    main()

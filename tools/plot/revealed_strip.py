"""Does the model keep the smear of the warped flow source? With "warp_source", each frame of a chunk starts from
the previous chunk's last frame turned to the frame's own camera; where the turn reveals pixels that frame never
saw, the warp repeats the border (engine/src/source_warp.cpp), so the source is constant along x there. This
compares, inside that revealed strip and outside it, the horizontal gradient energy of the generated frames with the
simulator's frames of the same trace, and of the flow source the warp makes from the simulator's own previous
frame. A ratio (model / simulator) much lower inside the strip than outside means the model keeps the smear.

Usage: python3 tools/plot/revealed_strip.py TRACE.json GENERATE_OUT_DIR [--json OUT.json] [--eye-height E]
(GENERATE_OUT_DIR from `kvworld-cli generate --trace TRACE.json --ground-truth`; frames/ and ground_truth/)."""
import json
import math
import os
import sys

import matplotlib.image as mpimg
import numpy as np


def dead_reckon(trace):
    """Poses (x, z, yaw, pitch) after every action, as the engine's integrate_pose (height not needed)."""
    m = trace["motion"]
    limit, step = m["pitch_limit_deg"], m["move_per_frame"]
    sp = trace["start_pose"]
    x, z, yaw, pitch = sp.get("x", 0.0), sp.get("z", 0.0), sp["yaw"], sp["pitch"]
    poses = []
    for a in trace["actions"]:
        yaw += a[3]
        yaw = yaw - 360 if yaw > 180 else (yaw + 360 if yaw <= -180 else yaw)
        pitch = max(-limit, min(limit, pitch + a[4]))
        mf, mr = (max(-1.0, min(1.0, v)) for v in a[:2])
        s, c = math.sin(math.radians(yaw)), math.cos(math.radians(yaw))
        x, z = x + (s * mf + c * mr) * step, z + (c * mf - s * mr) * step
        poses.append((x, z, yaw, pitch))
    return poses


def source_coords(from_pose, to_pose, size, hfov_deg, eye_height):
    """Where each pixel of the frame at to_pose samples the source frame: (sx, sy) [H, W] minus 0.5, the arithmetic
    of engine/src/source_warp.cpp view_change / warp_maps (eye_height 0: rotation only)."""
    w = h = size
    focal = 0.5 * w / math.tan(math.radians(0.5 * hfov_deg))
    dyaw = to_pose[2] - from_pose[2]
    dyaw = dyaw - 360 if dyaw > 180 else (dyaw + 360 if dyaw <= -180 else dyaw)
    yaw_t = math.radians(to_pose[2])
    dx, dz = to_pose[0] - from_pose[0], to_pose[1] - from_pose[1]
    forward, right = dx * math.sin(yaw_t) + dz * math.cos(yaw_t), dx * math.cos(yaw_t) - dz * math.sin(yaw_t)
    h_from = 0.5 * h + focal * math.tan(math.radians(from_pose[3]))
    h_to = 0.5 * h + focal * math.tan(math.radians(to_pose[3]))
    u = ((np.arange(w) + 0.5 - 0.5 * w) / focal)[None, :]
    dy = np.arange(h)[:, None] + 0.5 - h_to
    wgt = np.maximum(dy, 0.0) / (eye_height * focal) if eye_height > 0 else np.zeros_like(dy)
    px = u + right * wgt
    pz = np.maximum(1.0 + forward * wgt, 0.05) + 0 * u
    a_s = np.clip(np.arctan2(px, pz) + math.radians(dyaw), -math.radians(85), math.radians(85))
    sx = 0.5 * w + focal * np.tan(a_s) - 0.5
    sy = h_from + dy / (np.hypot(px, pz) * np.cos(a_s)) - 0.5
    return sx, sy


def warp(src, sx, sy):
    """warp_frame: bilinear, the border repeated outside the source. src [H, W, 3]; sx, sy [H, W]."""
    h, w = src.shape[:2]
    x0, y0 = np.floor(sx), np.floor(sy)
    wx, wy = (sx - x0)[..., None], (sy - y0)[..., None]
    x0, y0 = x0.astype(int), y0.astype(int)
    at = lambda yy, xx: src[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
    top = at(y0, x0) + wx * (at(y0, x0 + 1) - at(y0, x0))
    bottom = at(y0 + 1, x0) + wx * (at(y0 + 1, x0 + 1) - at(y0 + 1, x0))
    return top + wy * (bottom - top)


def revealed_mask(sx, sy, size):
    """Pixels whose source position lies outside the source frame."""
    w = h = size
    # At least a pixel beyond the source's edge: the bilinear fringe of the last row or column is not revealed.
    return (sx < -1) | (sx > w) | (sy < -1) | (sy > h)


def main():
    trace_path, out_dir = sys.argv[1], sys.argv[2]
    json_out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
    # the model's sampler.warp_eye_height (0: the rotation-only warp)
    eye_height = float(sys.argv[sys.argv.index("--eye-height") + 1]) if "--eye-height" in sys.argv else 0.0
    trace = json.load(open(trace_path))
    poses = dead_reckon(trace)
    ctx, chunk = trace["context_frames"], 4
    names = sorted(f for f in os.listdir(os.path.join(out_dir, "frames")) if f.endswith(".png"))
    sums = {k: {"model": 0.0, "sim": 0.0, "source": 0.0, "pixels": 0} for k in ("inside", "outside")}
    frames_with_strip = 0
    for name in names:
        i = int(name.split("_")[1].split(".")[0])
        if i < ctx:
            continue
        source = ctx - 1 + ((i - ctx) // chunk) * chunk  # the previous chunk's last frame (or the context's)
        gen = mpimg.imread(os.path.join(out_dir, "frames", name))[..., :3].astype(np.float64)
        gt = mpimg.imread(os.path.join(out_dir, "ground_truth", name))[..., :3].astype(np.float64)
        sx, sy = source_coords(poses[source], poses[i], gen.shape[1], trace["motion"]["hfov_deg"], eye_height)
        mask = revealed_mask(sx, sy, gen.shape[1])[:, 1:]
        source_frame = mpimg.imread(os.path.join(out_dir, "ground_truth", f"frame_{source:05d}.png"))[..., :3]
        gx_source = np.abs(np.diff(warp(source_frame.astype(np.float64), sx, sy), axis=1)).sum(axis=2)
        gx_model = np.abs(np.diff(gen, axis=1)).sum(axis=2)
        gx_sim = np.abs(np.diff(gt, axis=1)).sum(axis=2)
        if mask.any():
            frames_with_strip += 1
            for key, m in (("inside", mask), ("outside", ~mask)):
                sums[key]["model"] += gx_model[m].sum()
                sums[key]["sim"] += gx_sim[m].sum()
                sums[key]["source"] += gx_source[m].sum()
                sums[key]["pixels"] += int(m.sum())
    result = {"frames_with_revealed_pixels": frames_with_strip, "frames": len(names)}
    for key, s in sums.items():
        result[key] = {
            "pixels": s["pixels"],
            "horizontal_gradient_model": s["model"] / max(s["pixels"], 1),
            "horizontal_gradient_simulator": s["sim"] / max(s["pixels"], 1),
            "ratio_model_to_simulator": s["model"] / s["sim"] if s["sim"] > 0 else float("nan"),
            # the flow source as the engine builds it, from the simulator's frame (the model's own previous frame
            # in a rollout; the simulator's shows what the warp alone leaves)
            "ratio_warped_source_to_simulator": s["source"] / s["sim"] if s["sim"] > 0 else float("nan"),
        }
    print(json.dumps(result, indent=1))
    if json_out:
        with open(json_out + ".tmp", "w") as f:
            json.dump(result, f, indent=1)
        os.replace(json_out + ".tmp", json_out)


if __name__ == "__main__":
    main()

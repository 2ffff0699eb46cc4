"""Is a memory of the place in the context when the revisit score's rollouts come back to a place? For the 16
two-minute traces of `kvworld-cli eval --mode revisit` (worlds 1600000 + 7919 i, policy 4242 + i, one chunk of
context) and the context settings of v2 and the shipped model (window 3, recall 2 = the start context and the best
field-of-view overlap, 4 frames a chunk): every revisiting frame (a pose within 2 units and 15 degrees of one at
least 10 s earlier, as eval/src/revisit.cpp), the engine's context policy (tools/train/context.py) for its chunk,
and whether that context holds the earlier frame's chunk, or a recalled chunk at least 10 s older. Poses only.

Usage (from the repository root): python3 docs/experiments/2026-12-05-v2-retrained/revisit_memory_offered.py
build/sim/kvworld-sim"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, "tools/train")
sys.path.insert(0, "tools/plot")
import context as ctxpol  # noqa: E402
from revealed_strip import dead_reckon  # noqa: E402

F, WINDOW, RECALL, FPS, MIN_AGE = 4, 3, 2, 16, 160
sim = sys.argv[1]
tmp = tempfile.mkdtemp()
total = exact = offered = 0
ages, overlap_earlier, overlap_recalled = [], [], []
for i in range(16):
    path = os.path.join(tmp, f"t{i}.json")
    subprocess.run([sim, "trace", "--world-seed", str(1600000 + 7919 * i), "--policy-seed", str(4242 + i),
                    "--frames", "1920", "--context-frames", str(F), "--out", path], check=True, capture_output=True)
    t = json.load(open(path))
    y0 = t["start_pose"]["y"]  # the session dead-reckons at the start height
    poses = [(x, y0, z, yaw, pitch) for (x, z, yaw, pitch) in dead_reckon(t)]
    gen = np.array(poses[t["context_frames"]:])
    found = []  # (frame, earlier), generated frames
    for a in range(MIN_AGE, len(gen)):
        c = gen[: a - MIN_AGE + 1]
        d2 = (c[:, 0] - gen[a, 0]) ** 2 + (c[:, 2] - gen[a, 2]) ** 2
        yaw = np.abs((gen[a, 3] - c[:, 3] + 180) % 360 - 180)
        pitch = np.abs(gen[a, 4] - c[:, 4])
        ok = (d2 <= 4) & (yaw <= 15) & (pitch <= 15)
        if ok.any():
            found.append((a, int(np.argmin(np.where(ok, d2 / 4 + (yaw ** 2 + pitch ** 2) / 225, np.inf)))))
    chunks = 1 + (len(gen) + F - 1) // F
    chunk_pose = [poses[min(len(poses) - 1, F * k + F - 1)] for k in range(chunks)]  # each chunk's last frame
    n_exact = n_offered = 0
    for a, b in found:
        current, earlier = 1 + a // F, 1 + b // F
        context, recalled = ctxpol.choose_context(current, chunk_pose, WINDOW, RECALL, 90.0)
        others = [r for r in recalled if r != 0]
        is_exact = earlier in context
        is_old = any((current - r) * F >= MIN_AGE for r in others)
        n_exact += is_exact
        n_offered += is_exact or is_old
        overlap_earlier.append(ctxpol.fov_overlap(chunk_pose[current], chunk_pose[earlier], 90.0))
        if others:
            ages.append((current - others[0]) * F / FPS)
            overlap_recalled.append(ctxpol.fov_overlap(chunk_pose[current], chunk_pose[others[0]], 90.0))
    print(f"world {1600000 + 7919 * i}: {len(found)} revisiting frames; the earlier frame's chunk in the context "
          f"for {n_exact}, a memory of the place for {n_offered}")
    total, exact, offered = total + len(found), exact + n_exact, offered + n_offered
print(f"all 16 worlds: {total} revisiting frames; the earlier frame's chunk in the context for {exact} "
      f"({100 * exact / total:.0f}%); a recalled chunk at least 10 s older or that chunk for {offered} "
      f"({100 * offered / total:.0f}%)")
print(f"field-of-view overlap with the revisiting chunk: the earlier frame's chunk median {np.median(overlap_earlier):.2f}, "
      f"the recalled chunk median {np.median(overlap_recalled):.2f}; the recalled chunk's age median {np.median(ages):.1f} s")

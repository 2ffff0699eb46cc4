#!/usr/bin/env python3
"""The GPU section's tables from the probe's outputs in this folder (staggered_probe.py on an H100, 2026-12-07b):
one chunk (512 worlds) for the shipped model and the fine-tuned step 5762, and 30-s rollouts (32 worlds) of the
shipped model. Intervals as the probe computes them (per world against the shipped model's lag 0, bootstrap of
4,000, numpy default_rng(0)); the lag-2 rollouts ran in a call of their own, with the same noise, so their
interval against lag 0 is computed here.
    python3 gpu_summary.py"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def load(name):
    """{frame_lag: row} and the number of straight-walking chunks of one probe output"""
    with open(os.path.join(HERE, name)) as f:
        out = json.load(f)
    return {row["frame_lag"]: row for row in out["lags"]}, out["walking_chunks"]


def interval(d):
    """staggered_probe.py's interval (that file imports torch; this one runs without it), with the mean"""
    rng = np.random.default_rng(0)
    boot = [rng.choice(d, len(d)).mean() for _ in range(4000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return d.mean(), lo, hi


def later_share(row, direction="forward"):
    """frames 1-3 (pairs 1..3): the model's mean zoom excess over the simulator's, pooled over the three pairs"""
    pairs = row[direction][1:]
    model = sum((p["model_zoom"] - 1) * p["pairs"] for p in pairs)
    sim = sum((p["simulator_zoom"] - 1) * p["pairs"] for p in pairs)
    return model / sim


def main():
    (shipped, walking), (trained, _) = load("gpu_probe_shipped.json"), load("gpu_probe_trained_step5762.json")
    base = np.array(shipped[0]["per_world_psnr"])
    print(f"one chunk after a ground-truth context, {len(base)} worlds ({walking} straight-walking chunks)")
    print("model     lag passes margin  per world vs shipped lag 0    frames 1-3 fwd  frame 3 fwd  frames 1-3 back")
    for name, rows in (("shipped", shipped), ("step5762", trained)):
        for lag, row in sorted(rows.items()):
            d = np.array(row["per_world_psnr"]) - base
            m, lo, hi = interval(d)
            vs = "—" if name == "shipped" and lag == 0 else f"{m:+.3f} dB [{lo:+.3f}, {hi:+.3f}]"
            f3 = (row["forward"][3]["model_zoom"] - 1) / (row["forward"][3]["simulator_zoom"] - 1)
            print(f"{name:9s} {lag:3d} {row['passes']:6d} {row['margin']:+.2f}  {vs:29s} "
                  f"{100 * later_share(row):5.1f}%        {100 * f3:5.1f}%      {100 * later_share(row, 'back'):5.1f}%")
    rolls, walking = load("gpu_rollouts_shipped_lag01.json")
    rolls.update(load("gpu_rollouts_shipped_lag2.json")[0])
    print(f"\n30-s rollouts of the shipped model, 32 worlds ({walking} straight-walking chunks after chunk 0)")
    print("lag  fwd frames 1-3  fwd all  back frames 1-3  back all  per world, fwd frames 1-3 vs lag 0   pairs fwd/back")
    for lag, row in sorted(rolls.items()):
        vs = "—"
        if lag:
            b, n = rolls[0]["forward_later_pairs_per_world"], row["forward_later_pairs_per_world"]
            d = np.array([n[e] - b[e] for e in n if e in b])
            m, lo, hi = interval(d)
            vs = f"{100 * m:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}], {int((d > 0).sum())} of {len(d)} ahead"
        npairs = (sum(p["pairs"] for p in row["forward"]), sum(p["pairs"] for p in row["back"]))
        print(f"{lag:3d}  {100 * row['forward_later_pairs']:12.1f}%  {100 * row['forward_all_pairs']:6.1f}%  "
              f"{100 * row['back_later_pairs']:14.1f}%  {100 * row['back_all_pairs']:7.1f}%  {vs:40s} {npairs}")


if __name__ == "__main__":
    main()

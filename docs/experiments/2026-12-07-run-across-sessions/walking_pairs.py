#!/usr/bin/env python3
"""The run's adopt rule on walking: two `kvworld-cli eval --mode quality` JSONs (.gz or not) on the same worlds,
NEW against BASELINE, per walking direction: each one's figure (the model's walk signal over the simulator's,
pooled over the pairs where the simulator walks) and the paired difference with a 95% bootstrap interval
resampling worlds (the same draw for both; 4,000 resamples, numpy default_rng(0), as gpu_summary.interval). Reads
the walking figures' per-world sums (`world_sums`, in the eval's JSON since 2026-12-07), for the rollouts
(`walking`) and one chunk (`one_chunk_walking`).
    python3 walking_pairs.py NEW.json BASELINE.json"""
import gzip
import json
import sys

import numpy as np


def load(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path)) as f:
        return json.load(f)


def sums(report, path, section, walk):
    d = report[section]["directions"][walk]
    if "world_sums" not in d:
        sys.exit(f"{path}: no world_sums in {section}.{walk} (an eval from before 2026-12-07)")
    return np.array(d["world_sums"]["model"]), np.array(d["world_sums"]["simulator"])


def main():
    new, base = load(sys.argv[1]), load(sys.argv[2])
    if new["world_seed_base"] != base["world_seed_base"]:
        sys.exit(f"other worlds ({new['world_seed_base']} against {base['world_seed_base']})")
    for section, what in (("walking", "rollouts"), ("one_chunk_walking", "one chunk")):
        for walk in ("forward", "back", "strafe_left", "strafe_right"):
            (mn, sn), (mb, sb) = sums(new, sys.argv[1], section, walk), sums(base, sys.argv[2], section, walk)
            if len(mn) != len(mb):
                sys.exit(f"{section}.{walk}: {len(mn)} worlds against {len(mb)}")
            if not np.array_equal(sn, sb):  # the same worlds, frames and pairs give the same simulator signals
                sys.exit(f"{section}.{walk}: the simulator's sums differ: other pairs (--long-frames, --traces?)")
            contributing = int((sn > 0).sum())
            if contributing == 0:
                print(f"{what:9s} {walk:12s} no pairs")
                continue
            fn, fb = mn.sum() / sn.sum(), mb.sum() / sb.sum()
            line = (f"{what:9s} {walk:12s} new {100 * fn:5.1f}%  baseline {100 * fb:5.1f}%  "
                    f"difference {100 * (fn - fb):+5.1f}")
            if contributing < 2:  # as the eval's own interval: none from one world
                print(f"{line} points, one world: no interval")
                continue
            rng = np.random.default_rng(0)
            boot = []
            for _ in range(4000):  # draws without a contributing world are left out, as the eval's bootstrap does
                i = rng.integers(0, len(mn), len(mn))
                if sn[i].sum() > 0:
                    boot.append(mn[i].sum() / sn[i].sum() - mb[i].sum() / sb[i].sum())
            lo, hi = np.percentile(boot, [2.5, 97.5])
            print(f"{line} points [{100 * lo:+.1f}, {100 * hi:+.1f}], {contributing} worlds, {len(boot)} draws")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Rollouts of two `kvworld-cli eval --mode quality` JSONs on the same worlds, paired per world: windows within the
bar, mean edge ratio over windows, with a 95% bootstrap interval over the 12 worlds of NEW minus BASELINE.
  python3 rollout_pairs.py NEW.json BASELINE.json"""
import gzip
import json
import sys

import numpy as np


def load(path):
    return json.load(gzip.open(path) if path.endswith(".gz") else open(path))


# measure: (its value per world, how the worlds add up into the run's figure)
MEASURES = {
    "windows within the bar": (lambda r: sum(w["within_bar"] for w in r["windows"]), np.sum),
    "edge ratio": (lambda r: np.mean([w["edge_ratio"] for w in r["windows"]]), np.mean),
}


new, base = load(sys.argv[1]), load(sys.argv[2])
if new["world_seed_base"] != base["world_seed_base"]:
    sys.exit("other worlds")
rng = np.random.default_rng(0)
for name, (per_world, overall) in MEASURES.items():
    a, b = (np.array([per_world(r) for r in j["rollouts"]], float) for j in (new, base))
    d = a - b
    boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(10000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"{name}: new {overall(a):.2f}, baseline {overall(b):.2f}; per world {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")

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


def per_world(j):
    wins = np.array([sum(w["within_bar"] for w in r["windows"]) for r in j["rollouts"]], float)
    edges = np.array([np.mean([w["edge_ratio"] for w in r["windows"]]) for r in j["rollouts"]])
    return wins, edges


new, base = load(sys.argv[1]), load(sys.argv[2])
if new["world_seed_base"] != base["world_seed_base"]:
    sys.exit("other worlds")
rng = np.random.default_rng(0)
for name, a, b in zip(["windows within the bar", "edge ratio"], per_world(new), per_world(base)):
    d = a - b
    boot = [d[rng.integers(0, len(d), len(d))].mean() for _ in range(10000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"{name}: new {a.sum() if name.startswith('w') else a.mean():.2f}, baseline "
          f"{b.sum() if name.startswith('w') else b.mean():.2f}; per world {d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")

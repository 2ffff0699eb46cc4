#!/usr/bin/env python3
"""One chunk after a ground-truth context, paired per world: NEW's per-trace margin over repeating the last frame
minus BASELINE's, on the same held-out worlds and noise (both `kvworld-cli eval --mode quality` JSONs, .gz or not).
Mean difference with a 95% bootstrap interval over worlds, and how many worlds NEW is ahead in.
  python3 paired_one_chunk.py NEW.json BASELINE.json [BASELINE2.json ...]"""
import gzip
import json
import sys

import numpy as np


def load(path):
    return json.load(gzip.open(path) if path.endswith(".gz") else open(path))


new = load(sys.argv[1])
for path in sys.argv[2:]:
    base = load(path)
    if base["world_seed_base"] != new["world_seed_base"]:
        sys.exit(f"{path}: other worlds ({base['world_seed_base']} against {new['world_seed_base']})")
    d = np.array(new["one_chunk"]["trace_margins_db"]) - np.array(base["one_chunk"]["trace_margins_db"])
    rng = np.random.default_rng(0)
    boot = [rng.choice(d, len(d)).mean() for _ in range(10000)]
    lo, hi = np.percentile(boot, [2.5, 97.5])
    print(f"{path}: {d.mean():+.3f} dB [{lo:+.3f}, {hi:+.3f}], ahead in {(d > 0).sum()} of {len(d)} worlds")

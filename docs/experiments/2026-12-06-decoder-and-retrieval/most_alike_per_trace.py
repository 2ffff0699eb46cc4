#!/usr/bin/env python3
"""The rollout bar's baseline from `kvworld-cli eval --mode world-change --resample-pool N` (its eval.json, .gz or
not): for the first TRACES traces (the quality mode's rollouts are the first traces/2 of the same --traces), the
simulator's most alike world of the pool, one per trace, scored as the bar scores a model (windows within ±30%
of the trace's mean, contrast and edge energy), beside the 8 nearest and the trace's own start context.
  python3 most_alike_per_trace.py EVAL.json[.gz] [TRACES]"""
import gzip
import json
import sys

path = sys.argv[1]
d = json.load(gzip.open(path) if path.endswith(".gz") else open(path))["world_change"]
n = int(sys.argv[2]) if len(sys.argv) > 2 else len(d["per_trace"])
best = near = whole_best = whole_near = all_best = own = windows = 0
for own_trace, resampled in zip(d["per_trace"][:n], d["resampled"]["per_trace"][:n]):
    nearest = sorted(resampled["nearest"], key=lambda x: x["distance"])
    b = nearest[0]
    best += b["windows_within_bar"]
    whole_best += b["whole_trace"]["within_bar"]
    all_best += b["windows_within_bar"] == len(b["windows"])
    near += sum(x["windows_within_bar"] for x in nearest)
    whole_near += sum(x["whole_trace"]["within_bar"] for x in nearest)
    own += own_trace["windows_within_bar"]
    windows += len(own_trace["windows"])
print(f"{n} traces ({[t['world_seed'] for t in d['per_trace'][:n]][:3]}...), {windows} windows")
print(f"  the most alike world, one per trace: {best} windows ({100 * best / windows:.0f}%), "
      f"{whole_best} of {n} whole traces, {all_best} entirely")
print(f"  the 8 nearest: {near} of {8 * windows} windows ({100 * near / (8 * windows):.0f}%), "
      f"{whole_near} of {8 * n} whole traces")
print(f"  the trace's own start context kept: {own} windows")

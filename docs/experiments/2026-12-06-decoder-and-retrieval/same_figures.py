#!/usr/bin/env python3
"""Whether two `kvworld-cli eval` JSONs (.gz or not) hold exactly the same figures: every number and string compared
for equality, leaf by leaf, except the wall-clock ones (WALL_CLOCK). Prints how many leaves differ, the first few,
and the largest difference; exits 1 if any differ. For reproducibility checks: the same model, worlds and noise
must give the same bits. A is the reference: leaves only B holds under a key a later eval added (ADDED_SINCE: the
walking figures' world_sums of 2026-12-07) are counted apart, not as differences; any other leaf only one file holds
is a difference.
  python3 same_figures.py A.json B.json"""
import gzip
import json
import sys

WALL_CLOCK = {"ms_per_chunk"}  # a rollout's measured milliseconds a chunk: differs from run to run by design
ADDED_SINCE = {"world_sums"}  # keys the eval gained after the committed references were made


def load(path):
    return json.load(gzip.open(path) if path.endswith(".gz") else open(path))


def leaves(x, path=""):
    if isinstance(x, dict):
        for k in sorted(x):
            if k not in WALL_CLOCK:
                yield from leaves(x[k], f"{path}.{k}")
    elif isinstance(x, list):
        yield f"{path}#len", len(x)
        for i, v in enumerate(x):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, x


a, b = (dict(leaves(load(p))) for p in sys.argv[1:3])
added = sorted(k for k in b.keys() - a.keys() if any(f".{key}" in k for key in ADDED_SINCE))
differ = sorted(k for k in a.keys() | b.keys() if k not in added and a.get(k, "<absent>") != b.get(k, "<absent>"))
numeric = [abs(a[k] - b[k]) for k in differ
           if isinstance(a.get(k), (int, float)) and isinstance(b.get(k), (int, float))]
print(f"{len(a)} figures; {len(differ)} differ" + (f", largest difference {max(numeric):.3g}" if numeric else ""))
for k in differ[:10]:
    print(f"  {k}: {a.get(k, '<absent>')} | {b.get(k, '<absent>')}")
if added:
    print(f"{len(added)} leaves only in {sys.argv[2]} under keys added since the reference ({', '.join(ADDED_SINCE)}), "
          f"not compared")
sys.exit(1 if differ else 0)

#!/usr/bin/env python3
"""The run's porting rule (the run page's "The rules"), read from one session's probe outputs of the run's model at
lag 4 against the shipped model's committed probe at lag 0, on the same worlds and noise:
  - rollouts, forward frames 1-3 (`forward_later_pairs`) >= 65% of the simulator's zoom, with the interval of the
    per-world difference above 0 (worlds present in both files);
  - rollouts, back walking over all pairs >= 48% (the shipped model's 53% less 5 points);
  - one chunk >= -0.2 dB a world (`per_world_psnr`, episode by episode).
    python3 port_rule.py PROBE_RUN.json [PROBE_RUN_ROLLOUTS.json]
Without the rollouts' output (a call cut off before them) only the one-chunk count is read: a failed count still
says no, a met one leaves the rule unread (exit status 2). Other worlds or no lag-4 row: exit status 1."""
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "2026-12-07-staggered-frames"))
from gpu_summary import interval, later_share  # noqa: E402  (torch-free)


def rows(path, committed):
    """{frame_lag: row} of a probe output and of the committed one, whose worlds it must hold (the same dataset)"""
    with open(path) as f:
        out = json.load(f)
    with open(os.path.join(HERE, "..", "2026-12-07-staggered-frames", committed)) as f:
        ref = json.load(f)
    for key in ("episodes", "chunks", "walking_chunks"):
        if out.get(key) != ref[key]:
            sys.exit(f"{path}: {key} {out.get(key)}, the committed {committed} has {ref[key]}: other worlds")
    return ({row["frame_lag"]: row for row in out["lags"]}, {row["frame_lag"]: row for row in ref["lags"]})


def show(text, ok):
    print(f"{'met    ' if ok else 'not met'}  {text}")


def main():
    one, shipped_one = rows(sys.argv[1], "gpu_probe_shipped.json")
    roll = None  # the rollouts' rows, where their output is given
    if len(sys.argv) > 2:
        roll, shipped_roll = rows(sys.argv[2], "gpu_rollouts_shipped_lag01.json")
        shipped_roll = shipped_roll[0]
    if 4 not in one or (roll is not None and 4 not in roll):
        sys.exit("no lag-4 row: the probe ran with other --lags or was cut off")
    shipped_one = shipped_one[0]
    base = np.array(shipped_one["per_world_psnr"])
    print("one chunk (512 worlds), per world against the shipped model at lag 0; frames 1-3 forward, back")
    for lag, row in sorted(one.items()):
        m, lo, hi = interval(np.array(row["per_world_psnr"]) - base)
        print(f"  lag {lag}: {m:+.3f} dB [{lo:+.3f}, {hi:+.3f}]; {100 * later_share(row):.1f}%, "
              f"{100 * later_share(row, 'back'):.1f}%")
    chunk = interval(np.array(one[4]["per_world_psnr"]) - base)[0]
    chunk_check = (f"one chunk at lag 4 {chunk:+.3f} dB a world, >= -0.2 dB", chunk >= -0.2)
    if roll is None:
        show(*chunk_check)
        if not chunk_check[1]:
            print("port: no (the one chunk's count; the rollouts' output not given)")
            return
        print("port: not read (the rollouts' output not given)")
        sys.exit(2)
    lag4 = roll[4]
    b, n = shipped_roll["forward_later_pairs_per_world"], lag4["forward_later_pairs_per_world"]
    d = np.array([n[e] - b[e] for e in n if e in b])
    dm, dlo, dhi = interval(d)
    checks = [
        (f"rollouts forward frames 1-3 {100 * lag4['forward_later_pairs']:.1f}% (shipped at lag 0 "
         f"{100 * shipped_roll['forward_later_pairs']:.1f}%), >= 65%", lag4["forward_later_pairs"] >= 0.65),
        (f"  per world {100 * dm:+.1f} points [{100 * dlo:+.1f}, {100 * dhi:+.1f}] over {len(d)} worlds, above 0",
         dlo > 0),
        (f"rollouts back, all pairs {100 * lag4['back_all_pairs']:.1f}% (shipped "
         f"{100 * shipped_roll['back_all_pairs']:.1f}%), >= 48%", lag4["back_all_pairs"] >= 0.48),
        chunk_check,
    ]
    for check in checks:
        show(*check)
    print("port: " + ("yes" if all(ok for _, ok in checks) else "no"))


if __name__ == "__main__":
    main()

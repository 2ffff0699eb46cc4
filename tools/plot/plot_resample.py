"""How bar 2 scores worlds that the simulator itself draws, against how it scores the model.

`kvworld-cli eval --mode world-change --resample-pool M` replays each long trace's actions in other worlds and
scores their windows against the trace's own, as the bar scores the model. This script pools those pairs (the
nearest by start look and the random draws) into bins of look distance (RMS difference of the start contexts'
16x16 thumbnails) and reports, per bin, the share of 30-s windows within +-30%, of pairs within in every window,
and of pairs within over the whole trace. A model sees the start context exactly (distance 0) and the actions, so
the bins nearest 0 are what a model that invented the unseen world as faithfully as the simulator would score.
Given quality-mode eval.json files on the same traces, the model's own counts are drawn at distance 0, and the
scene-keeping baseline beside them.

Usage: python3 tools/plot/plot_resample.py WORLD_CHANGE_EVAL.json[,WORLD_CHANGE_EVAL.json...] OUT.png [QUALITY_EVAL.json ...]
(several world-change files, comma-separated, are pooled; their traces should be distinct worlds)
Prints the table as Markdown."""
import gzip
import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EDGES = [0.0, 0.06, 0.08, 0.10, 0.12, 0.15, 0.20, 0.30, 10.0]
TOL = 0.3


def wilson(k, n, z=1.96):
    """95% Wilson interval of a binomial share k/n."""
    if n == 0:
        return 0.0, 0.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def within(stats, ref):
    return all(abs(stats[k] / ref[k] - 1.0) <= TOL for k in ("mean", "contrast", "edges"))


def load(path):
    """An eval.json, or the same gzipped (.gz: how the larger ones are kept in docs/experiments)."""
    return json.load(gzip.open(path, "rt") if path.endswith(".gz") else open(path))


def main():
    wc_paths, out = sys.argv[1].split(","), sys.argv[2]
    wcs = [load(p)["world_change"] for p in wc_paths]
    per_trace = [t for wc in wcs for t in wc["resampled"]["per_trace"]]
    pairs = []  # (distance, windows within, windows, whole within)
    for t in per_trace:
        for kind in ("nearest", "random"):
            for r in t[kind]:
                pairs.append((r["distance"], r["windows_within_bar"], len(r["windows"]), r["whole_trace"]["within_bar"]))
    rows = []
    for lo, hi in zip(EDGES[:-1], EDGES[1:]):
        b = [p for p in pairs if lo <= p[0] < hi]
        if not b:
            continue
        w = sum(p[1] for p in b)
        wn = sum(p[2] for p in b)
        e = sum(p[1] == p[2] for p in b)
        h = sum(p[3] for p in b)
        rows.append(dict(lo=lo, hi=hi, mid=sum(p[0] for p in b) / len(b), n=len(b), w=w, wn=wn, e=e, h=h))

    # The model and the scene-keeping baseline on the same traces.
    seeds = {t["world_seed"]: t for wc in wcs for t in wc["per_trace"]}
    model = dict(w=0, wn=0, e=0, n=0, h=0)
    keep = dict(w=0, wn=0, e=0, n=0, h=0)
    for q in sys.argv[3:]:
        for r in load(q).get("rollouts", []):
            if r["world_seed"] not in seeds:
                continue
            k = sum(w["within_bar"] for w in r["windows"])
            model["w"] += k
            model["wn"] += len(r["windows"])
            model["e"] += k == len(r["windows"])
            model["h"] += r["whole_trace"]["within_bar"]
            model["n"] += 1
            t = seeds[r["world_seed"]]
            kk = t["windows_within_bar"]
            keep["w"] += kk
            keep["wn"] += len(t["windows"])
            keep["e"] += kk == len(t["windows"])
            keep["h"] += within(t["start_context"], t["whole_trace"])
            keep["n"] += 1

    for p, wc in zip(wc_paths, wcs):
        rs = wc["resampled"]
        print(f"{p}: a pool of {rs['pool']} worlds, {rs['per_trace_scored']} nearest and {rs['per_trace_scored']} at random "
              f"per trace, {len(rs['per_trace'])} traces")
    print()
    print("| look distance | pairs | windows within | pairs entirely | pairs over the whole trace |")
    print("|---|---|---|---|---|")
    for r in rows:
        hi = f"{r['hi']:.2f}" if r["hi"] < 10 else "…"
        print(f"| {r['lo']:.2f}–{hi} | {r['n']} | {r['w']} of {r['wn']} ({100 * r['w'] / r['wn']:.0f}%) | {r['e']} "
              f"({100 * r['e'] / r['n']:.0f}%) | {r['h']} ({100 * r['h'] / r['n']:.0f}%) |")
    for name, m in (("the model (distance 0)", model), ("start kept", keep)):
        if m["n"]:
            print(f"| {name} | {m['n']} | {m['w']} of {m['wn']} ({100 * m['w'] / m['wn']:.0f}%) | {m['e']} "
                  f"({100 * m['e'] / m['n']:.0f}%) | {m['h']} ({100 * m['h'] / m['n']:.0f}%) |")

    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.0), sharey=True)
    for ax, (key, total, title) in zip(axes, (("w", "wn", "30-s windows within ±30%"), ("e", "n", "worlds within in every window"),
                                              ("h", "n", "worlds within over the whole trace"))):
        xs = [r["mid"] for r in rows]
        ys = [r[key] / r[total] for r in rows]
        lo_hi = [wilson(r[key], r[total]) for r in rows]
        ax.errorbar(xs, ys, yerr=[[y - l for y, (l, _) in zip(ys, lo_hi)], [h - y for y, (_, h) in zip(ys, lo_hi)]],
                    fmt="o-", color="0.3", ms=4, lw=1, capsize=2, label="other worlds, same actions")
        for name, m, style in (("model", model, "o"), ("start kept", keep, "s")):
            if m["n"]:
                y = m[key] / m[total]
                l, h = wilson(m[key], m[total])
                ax.errorbar([0.0 if name == "model" else 0.008], [y], yerr=[[y - l], [h - y]], fmt=style,
                            color="tab:red" if name == "model" else "tab:blue", ms=6, capsize=2, label=name)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("start look distance (RMS, 16×16 thumbnails)", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("share", fontsize=8)
    axes[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(out + ".tmp.png", dpi=110)
    os.replace(out + ".tmp.png", out)


if __name__ == "__main__":
    main()

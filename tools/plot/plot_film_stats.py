"""Per-second contrast of long rollouts beside the simulator's on the same traces (film_stats.py output), one panel
per world: shows whether a failing window of the quality evaluation is the model's frames collapsing or the
simulator's scene changing while the model's stays as it was.
Usage: python3 tools/plot/plot_film_stats.py OUT.png STATS.json [STATS.json ...]"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, files = sys.argv[1], sys.argv[2:]
    fig, axes = plt.subplots(1, len(files), figsize=(3.0 * len(files), 2.6), squeeze=False, sharey=True)
    for ax, f in zip(axes[0], files):
        rows = json.load(open(f))["seconds"]
        sec = [r["second"] for r in rows]
        ax.plot(sec, [r["simulator"]["contrast"] for r in rows], color="0.3", lw=1.2, label="simulator")
        ax.plot(sec, [r["model"]["contrast"] for r in rows], color="tab:red", lw=1.2, label="model")
        ax.fill_between(sec, [0.7 * r["simulator"]["contrast"] for r in rows], [1.3 * r["simulator"]["contrast"] for r in rows],
                        color="0.85", lw=0, label="±30%")
        ax.set_title("world " + os.path.basename(os.path.dirname(os.path.abspath(f))).split("_")[-1], fontsize=9)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].set_ylabel("contrast (luma std)", fontsize=8)
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out + ".tmp.png", dpi=110)
    os.replace(out + ".tmp.png", out)


if __name__ == "__main__":
    main()

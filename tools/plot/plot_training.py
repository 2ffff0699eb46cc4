"""Loss curves of the training runs (train.py --log JSON files). Usage:
python3 tools/plot/plot_training.py OUT.png LOG.json [LOG.json ...]"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, logs = sys.argv[1], sys.argv[2:]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    offset = 0
    for path in logs:
        log = json.load(open(path))
        pts = log["points"]
        # Episodes seen, not steps: the runs differ in batch size (16, later 32 episodes of 8 chunks).
        seen = [offset + p["samples"] for p in pts]
        batches = "/".join(sorted({str(r["batch"]) for r in log["runs"]}))
        ax.plot(seen, [p["mse"] for p in pts], label=f"{path.split('/')[-2]}/{path.split('/')[-1]} (batch {batches}): x0 MSE")
        offset = seen[-1] if seen else offset
    ax.set(xlabel="episodes seen (32 frames = 8 chunks each), all runs in order", ylabel="MSE of x0 (pixels in [-1, 1])", yscale="log",
           title="KVWorld default model training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()

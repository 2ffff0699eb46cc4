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
        steps = [offset + p["step"] for p in pts]
        ax.plot(steps, [p["mse"] for p in pts], label=f"{path.split('/')[-1]}: x0 MSE")
        offset = steps[-1] if steps else offset
    ax.set(xlabel="optimizer step (batch of 16 episodes x 8 chunks)", ylabel="MSE of x0 (pixels in [-1, 1])", yscale="log",
           title="KVWorld default model training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()

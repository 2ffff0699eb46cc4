"""Film strip of a long rollout: generated frames (top row) over the simulator's frames of the same trace
(bottom row), as collected by `PHASES=film tools/gpu/session_run.sh` (DIR/frames, DIR/ground_truth).
Usage: python3 tools/plot/plot_film.py DIR OUT.png [fps]"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402


def main():
    src, out = sys.argv[1], sys.argv[2]
    fps = float(sys.argv[3]) if len(sys.argv) > 3 else 16.0
    names = sorted(f for f in os.listdir(os.path.join(src, "frames")) if f.endswith(".png"))
    if not names:
        sys.exit(f"plot_film: no frames in {src}/frames")
    context = 4  # the trace's ground-truth context frames come first; time counts from the first generated one
    fig, axes = plt.subplots(2, len(names), figsize=(1.45 * len(names), 3.2), squeeze=False)
    for i, name in enumerate(names):
        index = int(name.split("_")[1].split(".")[0])
        for row, sub in enumerate(("frames", "ground_truth")):
            ax = axes[row][i]
            ax.imshow(mpimg.imread(os.path.join(src, sub, name)), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][i].set_title(f"{(index - context) / fps:.0f} s", fontsize=8)
    axes[0][0].set_ylabel("model", fontsize=8)
    axes[1][0].set_ylabel("simulator", fontsize=8)
    fig.tight_layout(pad=0.3)
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()

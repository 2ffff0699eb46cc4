"""Per-second frame statistics of a generated rollout and its simulator ground truth, as kvworld-cli eval computes
them per frame (luma mean, luma standard deviation = contrast, mean gradient magnitude = edge energy), so that a
failing 30-s window of the quality evaluation can be traced to when and how it drifts.
Usage: python3 tools/plot/film_stats.py GENERATE_OUT_DIR OUT.json [fps] [context_frames]
(GENERATE_OUT_DIR: `kvworld-cli generate --ground-truth --no-video` output with frames/ and ground_truth/)"""
import json
import os
import sys

import numpy as np

try:
    from PIL import Image

    def read_rgb(path):
        return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
except ImportError:  # matplotlib reads PNG without Pillow
    import matplotlib.image as mpimg

    def read_rgb(path):
        return mpimg.imread(path)[..., :3].astype(np.float64) * 255.0


def stats(path):
    rgb = read_rgb(path)
    y = rgb @ np.array([0.299, 0.587, 0.114])
    gx, gy = y[:-1, 1:] - y[:-1, :-1], y[1:, :-1] - y[:-1, :-1]
    return y.mean(), y.std(), np.sqrt(gx * gx + gy * gy).mean()


def main():
    src, out = sys.argv[1], sys.argv[2]
    fps = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    context = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    names = sorted(f for f in os.listdir(os.path.join(src, "frames")) if f.endswith(".png"))[context:]
    rows = []
    for s in range(len(names) // fps):
        g = np.array([stats(os.path.join(src, "frames", n)) for n in names[s * fps:(s + 1) * fps]]).mean(0)
        t = np.array([stats(os.path.join(src, "ground_truth", n)) for n in names[s * fps:(s + 1) * fps]]).mean(0)
        rows.append({"second": s, "model": dict(zip(("mean", "contrast", "edges"), g.round(3).tolist())),
                     "simulator": dict(zip(("mean", "contrast", "edges"), t.round(3).tolist())),
                     "ratio": dict(zip(("mean", "contrast", "edges"), (g / np.maximum(t, 1e-6)).round(3).tolist()))})
    with open(out + ".tmp", "w") as f:
        json.dump({"source": src, "fps": fps, "seconds": rows}, f, indent=1)
    os.replace(out + ".tmp", out)


if __name__ == "__main__":
    main()

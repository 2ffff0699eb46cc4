"""Plots of `kvworld-cli eval` results (eval.json): quality against bits, the stolen attention mass per
layer, and the correction's effect. Usage: python3 tools/plot/plot_eval.py EVAL_JSON [EVAL_JSON ...] OUT_DIR
(several grids, e.g. the cheap corrections and the exact one run separately, are merged by row label; the plots
show the equal key/value bit pairs)."""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    srcs, out = sys.argv[1:-1], sys.argv[-1]
    os.makedirs(out, exist_ok=True)
    by_label = {}
    for src in srcs:
        for r in json.load(open(src)).get("grid", {}).get("rows", []):
            by_label.setdefault(r["label"], r)
    rows = [r for r in by_label.values() if r["key_bits"] == r["value_bits"]]
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for corr, marker in (("off", "o"), ("taylor", "s"), ("exact", "^")):
            for lay, ls in (("token", "-"), ("channel", "--")):
                pts = sorted((r["bits_per_element"], r["psnr_vs_ref"], r["psnr_vs_gt"]) for r in rows
                             if r["key_bits"] < 16 and r["correction"] == corr and r["key_layout"] == lay)
                if not pts:
                    continue
                axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, ls="", label=f"{corr}, keys {lay}")
                axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker=marker, ls="", label=f"{corr}, keys {lay}")
        ref_gt = [r["psnr_vs_gt"] for r in rows if r["key_bits"] == 16]
        if ref_gt:
            axes[1].axhline(ref_gt[0], color="k", lw=0.8, label="BF16 cache")
        axes[0].set(xlabel="bits per element (codes + metadata)", ylabel="PSNR vs BF16-cache output (dB)", title="Fidelity to the BF16 cache")
        axes[1].set(xlabel="bits per element (codes + metadata)", ylabel="PSNR vs simulator (dB)", title="Against ground truth")
        for ax in axes:
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(out, "quality_vs_bits.png"), dpi=110)
        plt.close(fig)
        # Delta P_S per layer for the INT2 g128 token rows (and INT4 g64)
        fig, ax = plt.subplots(figsize=(7, 3.8))
        sel = [r for r in rows if r["key_layout"] == "token" and ((r["key_bits"] == 2 and r["group"] == 128) or (r["key_bits"] == 4 and r["group"] == 64))]
        width = 0.8 / max(1, len(sel))
        for i, r in enumerate(sel):
            d = r["delta_p_cache"]
            ax.bar([l + i * width for l in range(len(d))], d, width=width, label=r["label"])
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel="layer", ylabel="ΔP_S (attention mass on the cache − BF16)", title="Attention stolen by the quantized cache")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3, axis="y")
        fig.tight_layout()
        fig.savefig(os.path.join(out, "delta_ps_layers.png"), dpi=110)
        plt.close(fig)
    print("plots in", out)


if __name__ == "__main__":
    main()

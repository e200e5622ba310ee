#!/usr/bin/python3
"""Plot `minidl prune --sensitivity` results: test accuracy against each layer's sparsity.

    ./build/default/minidl prune runs/cnn.safetensors --sensitivity --out runs/cnn-sensitivity.json
    python3 tools/bench/plot_sensitivity.py runs/cnn-sensitivity.json runs/cnn-sensitivity.png
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("png")
    a = p.parse_args()
    with open(a.results) as f:
        data = json.load(f)
    fig, ax = plt.subplots(figsize=(6, 4))
    for param in dict.fromkeys(pt["param"] for pt in data["points"]):
        pts = [(pt["sparsity"], pt["accuracy"]) for pt in data["points"] if pt["param"] == param]
        ax.plot([100 * s for s, _ in pts], [100 * v for _, v in pts], marker="o", label=param)
    ax.axhline(100 * data["dense_accuracy"], color="black", linewidth=0.8, linestyle="--", label="dense")
    ax.set_xlabel("sparsity of that layer alone (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{os.path.basename(data['checkpoint'])}: sensitivity to L1 pruning", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = a.png + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, a.png)


if __name__ == "__main__":
    main()

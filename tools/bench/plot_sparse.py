#!/usr/bin/python3
"""Plot `minidl bench sparse` results: speed-up over dense against sparsity.

One panel per weight shape (rows) and batch size (columns); one line per
implementation (CSR on random and on magnitude-pruned weights, BSR on its block
pattern, the structurally shrunk layer, OpenBLAS), with the 1.0 line where a
variant starts to pay. Drawn with matplotlib (Debian's python3-matplotlib).

    ./build/default/minidl bench sparse --out docs/img/sparse.json
    python3 tools/bench/plot_sparse.py docs/img/sparse.json docs/img/sparse.png
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", help="the JSON of minidl bench sparse --out (or --json)")
    p.add_argument("png", help="the picture to write")
    p.add_argument("--dpi", type=int, default=110)
    a = p.parse_args()
    with open(a.results) as f:
        data = json.load(f)
    rows = data["results"]
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    batches = list(dict.fromkeys(r["batch"] for r in rows))
    labels = [l for l in dict.fromkeys(r["label"] for r in rows) if l != "dense"]
    fig, axes = plt.subplots(len(shapes), len(batches), figsize=(4.2 * len(batches), 3.0 * len(shapes)),
                             squeeze=False, sharex=True)
    for i, shape in enumerate(shapes):
        for k, batch in enumerate(batches):
            ax = axes[i][k]
            for label in labels:
                pts = sorted((r["sparsity"], r["speedup"]["median"]) for r in rows
                             if r["shape"] == shape and r["batch"] == batch and r["label"] == label)
                if pts:
                    ax.plot([100 * s for s, _ in pts], [v for _, v in pts], marker=".", label=label)
            ax.axhline(1.0, color="black", linewidth=0.8)
            ax.set_yscale("log")
            ax.set_title(f"{shape}, batch {batch}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            if k == 0:
                ax.set_ylabel("speed-up over dense")
            if i == len(shapes) - 1:
                ax.set_xlabel("sparsity (%)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.suptitle(f"minidl bench sparse, {data.get('threads', '?')} threads — {data.get('cpu', '')[:80]}", fontsize=9,
                 y=0.998)
    fig.legend(handles, names, loc="upper center", bbox_to_anchor=(0.5, 0.985), ncol=min(len(names), 5), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    os.makedirs(os.path.dirname(os.path.abspath(a.png)), exist_ok=True)
    tmp = a.png + ".tmp.png"
    fig.savefig(tmp, dpi=a.dpi)
    os.replace(tmp, a.png)  # atomic: a reader never sees half a picture
    print(f"wrote {a.png}", file=sys.stderr)


if __name__ == "__main__":
    main()

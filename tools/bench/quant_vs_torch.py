#!/usr/bin/python3
"""fp32, bf16 and int8 dynamic inference: minidl against PyTorch, side by side.

One trained checkpoint (a zoo model saved by `minidl train`) goes through
  minidl   `minidl bench classifier --json`: fp32 eager, fp32 compiled, bf16 eager,
           bf16 + compile, int8 dynamic, int8 + compile (and, for a CNN, int8 +
           conv and its compiled plan, which PyTorch's dynamic quantization has
           no counterpart for: listed, but left out of the int8 ratio);
  PyTorch  the same weights loaded strictly into tools/bench/torch_models.py's
           model: fp32, `torch.ao.quantization.quantize_dynamic` ({nn.Linear},
           qint8) under each x86 quantized engine it has (fbgemm, onednn, x86:
           whichever this build holds),
           bf16 weights (`.to(torch.bfloat16)`) and fp32 weights under
           `torch.autocast("cpu", torch.bfloat16)`;
with the same threads, on the first images of the Fashion-MNIST test set, in
rounds that alternate minidl and PyTorch; each ratio is taken round by round
and the median printed with its range. Every PyTorch variant is checked before
it is timed (its logits against PyTorch fp32's) and its test accuracy printed.

PyTorch is only a comparator: Debian's python3-torch, installed for this script alone.

    /usr/bin/python3 tools/bench/quant_vs_torch.py runs/mlp.safetensors --batch 1 128 --threads 2
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models  # noqa: E402
from torch_interop import read_safetensors  # noqa: E402
from train_vs_torch import load_batches  # noqa: E402


def sqnr_db(ref, got):
    ref, got = ref.double(), got.double()
    noise = (ref - got).pow(2).sum().item()
    return float("inf") if noise == 0 else 10 * torch.log10(ref.pow(2).sum() / noise).item()


def torch_variants(path):
    """{name: callable(x) -> logits}, each a PyTorch way to run the checkpoint."""
    tensors, meta = read_safetensors(path)
    arch = meta.get("arch")
    if arch is None:
        sys.exit(f"{path}: no 'arch' in its metadata: PyTorch can only rebuild zoo models here")

    def fp32():
        m = torch_models.build(arch)
        m.load_state_dict({k: v for k, v in tensors.items() if not k.startswith("optimizer.")}, strict=True)
        return m.eval()

    out = {"torch fp32": fp32()}
    for engine in torch.backends.quantized.supported_engines:
        # qnnpack is the engine for ARM phones: on x86 it measured 20.9 ms at batch 128
        # (0.05x PyTorch fp32) here, and it logs a warning on every call.
        if engine in ("fbgemm", "onednn", "x86"):
            torch.backends.quantized.engine = engine
            q = torch.ao.quantization.quantize_dynamic(fp32(), {torch.nn.Linear}, dtype=torch.qint8)
            out[f"torch int8 dynamic ({engine})"] = (q, engine)
    out["torch bf16 weights"] = fp32().to(torch.bfloat16)
    out["torch autocast bf16"] = fp32()
    runners = {}
    for name, m in out.items():
        if isinstance(m, tuple):
            model, engine = m

            def run(x, model=model, engine=engine):
                torch.backends.quantized.engine = engine
                return model(x)
        elif name == "torch bf16 weights":
            def run(x, model=m):
                return model(x.to(torch.bfloat16)).float()
        elif name == "torch autocast bf16":
            def run(x, model=m):
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(x).float()
        else:
            def run(x, model=m):
                return model(x)
        runners[name] = run
    return runners


def time_torch(runners, x, min_time):
    """{name: median seconds}, each variant in turn for min_time."""
    out = {}
    with torch.inference_mode():
        for name, run in runners.items():
            for _ in range(5):
                run(x)
            times, total = [], 0.0
            while total < min_time or len(times) < 10:
                t0 = time.perf_counter()
                run(x)
                dt = time.perf_counter() - t0
                times.append(dt)
                total += dt
            out[name] = statistics.median(times)
    return out


def time_minidl(binary, path, batch, min_time, threads, data):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [binary, "bench", "classifier", "--model", path, "--batch", str(batch), "--data", data, "--min-time",
           str(min_time), "--threads", str(threads), "--json"]
    res = json.loads(subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout)
    return {f"minidl {v['variant']}": v["results"][0]["stats"]["median_s"] for v in res["variants"]}, res


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--batch", nargs="+", type=int, default=[1, 128])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--min-time", type=float, default=0.3, help="seconds per variant per round")
    p.add_argument("--binary", default="build/default/minidl")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    runners = torch_variants(a.checkpoint)

    # Checked before timing, and evaluated: every variant against PyTorch fp32.
    x_all, y_all = load_batches(a.data, 10000, 1, split="t10k")[0]
    accuracy, sqnr = {}, {}
    with torch.inference_mode():
        ref = runners["torch fp32"](x_all[:256])
        for name, run in runners.items():
            sqnr[name] = sqnr_db(ref, run(x_all[:256]))
            if sqnr[name] < 20:
                sys.exit(f"{name}: logits {sqnr[name]:.1f} dB from PyTorch fp32's: a wrong result is not timed")
            pred = torch.cat([run(x_all[i:i + 500]).argmax(1) for i in range(0, len(x_all), 500)])
            accuracy[name] = (pred == y_all).double().mean().item()

    results, cpu = [], None
    for batch in a.batch:
        x = x_all[:batch].contiguous()
        rounds = []
        for r in range(a.rounds):
            got = {}
            for who in (["minidl", "torch"] if r % 2 == 0 else ["torch", "minidl"]):
                if who == "minidl":
                    m, res = time_minidl(a.binary, a.checkpoint, batch, a.min_time, a.threads, a.data)
                    cpu = res["cpu"]
                    for v in res["variants"]:
                        accuracy.setdefault(f"minidl {v['variant']}", v["accuracy"])
                    got.update(m)
                else:
                    got.update(time_torch(runners, x, a.min_time))
            rounds.append(got)
        names = list(rounds[0])
        base = "minidl fp32 eager"
        row = {"batch": batch, "median_s": {n: statistics.median(r[n] for r in rounds) for n in names}}

        def ratio(num, den_names):
            # den: the fastest of den_names in each round; > 1: `num` faster
            vals = [min(r[d] for d in den_names) / r[num] for r in rounds]
            return {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}

        torch_int8 = [n for n in names if n.startswith("torch int8")]
        torch_bf16 = ["torch bf16 weights", "torch autocast bf16"]
        # Like for like: PyTorch's quantize_dynamic takes Linear layers only, so the
        # int8 ratio leaves out minidl's "int8 + conv" rows (int8 convolutions),
        # which the table still lists beside the others.
        best = lambda prefix: min((n for n in names if n.startswith(prefix) and "+ conv" not in n),
                                  key=lambda n: row["median_s"][n])
        row["minidl_int8_vs_torch_best_int8"] = ratio(best("minidl int8"), torch_int8)
        row["minidl_bf16_vs_torch_best_bf16"] = ratio(best("minidl bf16"), torch_bf16)
        row["best_minidl_int8"], row["best_minidl_bf16"] = best("minidl int8"), best("minidl bf16")
        row["vs_minidl_fp32_eager"] = {n: ratio(n, [base])["median"] for n in names}
        row["vs_torch_fp32"] = {n: ratio(n, ["torch fp32"])["median"] for n in names}
        results.append(row)

    if a.json:
        print(json.dumps({"benchmark": "quant vs torch", "torch": torch.__version__, "threads": a.threads,
                          "cpu": cpu, "rounds": a.rounds, "accuracy": accuracy, "torch_sqnr_db": sqnr,
                          "results": results}))
        return
    print(f"{a.checkpoint}; PyTorch {torch.__version__}, quantized engines {torch.backends.quantized.supported_engines}; "
          f"{a.threads} threads; {a.rounds} rounds alternating minidl and PyTorch")
    print(f"minidl: {cpu}")
    for row in results:
        print(f"\nbatch {row['batch']}")
        print(f"  {'variant':34} {'median':>11} {'vs minidl fp32 eager':>21} {'vs torch fp32':>14} {'accuracy':>9}")
        for n, s in sorted(row["median_s"].items(), key=lambda kv: kv[1]):
            print(f"  {n:34} {s * 1e6:8.1f} us {row['vs_minidl_fp32_eager'][n]:20.2f}x "
                  f"{row['vs_torch_fp32'][n]:13.2f}x {100 * accuracy.get(n, float('nan')):8.2f}%")
        for key, label in (("minidl_int8_vs_torch_best_int8", f"{row['best_minidl_int8']} vs PyTorch's best int8"),
                           ("minidl_bf16_vs_torch_best_bf16", f"{row['best_minidl_bf16']} vs PyTorch's best bf16")):
            r = row[key]
            print(f"  {label}: {r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f}; > 1: minidl faster)")
    print("\n(accuracies on the 10000 test images)")


if __name__ == "__main__":
    main()

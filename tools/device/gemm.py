"""Time dense GEMMs on the GPU this runs on, as moeplan's gemm tables are laid out.

Writes CSV rows `version,kernel_source,gemm_dtype,m,n,k,latency` (latency in
milliseconds, the layout of the shared calibration tables' gemm.csv) for the
linear layers of Llama-3.1-8B, Llama-3.1-70B and Qwen3-32B under tensor
parallelism 1, 2, 4 and 8, at m = 1 .. 16384 tokens:

- bf16: `torch.matmul` (cuBLAS), the kernel vLLM runs for unquantised linears;
- fp8: `torch._scaled_mm` with per-tensor scales (cuBLASLt), m >= 16;
- fp8_block: `torch._scaled_mm` with 1×128 activation and 128×128 weight
  scales (cuBLASLt's block-scaled FP8, the scheme of DeepSeek's and Qwen's
  FP8 checkpoints), m >= 16, where this PyTorch and cuBLAS run it.

Each shape is timed as a CUDA graph of R back-to-back GEMMs (R so that one
replay lasts about 2 ms, at least 3), over enough copies of the weight that
they do not fit in L2 together (weights are read from HBM in a real forward
pass); the median of 5 replays, divided by R. Usage:
`python3 tools/device/gemm.py OUT.csv` on a machine with one GPU.
"""
import math
import sys

import torch

SHAPES = {  # model: (hidden, intermediate, query heads, kv heads, head dim)
    "llama-3.1-8b": (4096, 14336, 32, 8, 128),
    "llama-3.1-70b": (8192, 28672, 64, 8, 128),
    "qwen3-32b": (5120, 25600, 64, 8, 128),
}
TPS = (1, 2, 4, 8)
MS = (1, 4, 16, 64, 256, 1024, 4096, 16384)
L2_SPAN = 256 << 20
KERNELS = [("bfloat16", "torch.matmul"), ("fp8", "torch._scaled_mm"), ("fp8_block", "torch._scaled_mm")]


def linears(h, inter, q, kv, d, tp):
    """(n, k) of qkv, o, gate_up and down under `tp`."""
    return [((q + 2 * kv) * d // tp, h), (h, q * d // tp), (2 * inter // tp, h), (h, inter // tp)]


def timed(fn, reps):
    """Median ms of one call of `fn`, from 5 replays of a graph of `reps` calls."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(2):
            fn(i)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(reps):
            fn(i)
    g.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(5):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        g.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / reps)
    del g
    return sorted(times)[2]


LAYOUTS = []  # the scale layout that ran (probed in main)


def block_scales(m, n, k, layout=None):
    """Scales of a 1×128 (activations) by 128×128 (weights) block-scaled GEMM:
    each either outer-dimension-major (`t`) or row-major (`r`)."""
    la, lb = layout or LAYOUTS[0]
    kb, nb = k // 128, n // 128
    dev, f32 = "cuda", torch.float32
    sa = torch.ones(kb, m, device=dev, dtype=f32).t() if la == "t" else torch.ones(m, kb, device=dev, dtype=f32)
    sb = torch.ones(nb, kb, device=dev, dtype=f32).t() if lb == "t" else torch.ones(kb, nb, device=dev, dtype=f32)
    return sa, sb


def measure(m, n, k, dtype):
    """Median ms of one m×n×k GEMM in `dtype` ('bfloat16' or 'fp8')."""
    dev = "cuda"
    wbytes = n * k * (2 if dtype == "bfloat16" else 1)
    a = torch.randn(m, k, device=dev, dtype=torch.bfloat16)
    if dtype == "bfloat16":
        ws = [torch.randn(k, n, device=dev, dtype=torch.bfloat16)]
        out = torch.empty(m, n, device=dev, dtype=torch.bfloat16)
        call = lambda i: torch.matmul(a, ws[i % len(ws)], out=out)  # noqa: E731
    elif dtype == "fp8":
        a = a.to(torch.float8_e4m3fn)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16).to(torch.float8_e4m3fn).t()]
        one = torch.ones((), device=dev, dtype=torch.float32)
        call = lambda i: torch._scaled_mm(a, ws[i % len(ws)], one, one, out_dtype=torch.bfloat16)  # noqa: E731
    else:
        a = a.to(torch.float8_e4m3fn)
        ws = [torch.randn(n, k, device=dev, dtype=torch.bfloat16).to(torch.float8_e4m3fn).t()]
        sa, sb = block_scales(m, n, k)
        call = lambda i: torch._scaled_mm(a, ws[i % len(ws)], sa, sb, out_dtype=torch.bfloat16)  # noqa: E731
    rough = timed(call, 3)
    reps = max(3, min(64, math.ceil(2.0 / max(rough, 1e-4))))
    copies = max(1, min(reps, math.ceil(L2_SPAN / wbytes)))
    while len(ws) < copies:
        ws.append(ws[0].clone() if dtype == "bfloat16" else ws[0].t().clone().t())
    return timed(call, reps)


def main(path):
    torch.backends.cuda.matmul.allow_tf32 = False
    for layout in (("t", "t"), ("r", "r"), ("t", "r"), ("r", "t")):  # which scale layout cuBLASLt takes
        try:
            a = torch.randn(128, 1024, device="cuda").to(torch.float8_e4m3fn)
            b = torch.randn(1024, 1024, device="cuda").to(torch.float8_e4m3fn).t()
            torch._scaled_mm(a, b, *block_scales(128, 1024, 1024, layout), out_dtype=torch.bfloat16)
            torch.cuda.synchronize()
            LAYOUTS.append(layout)
            print(f"block-scaled FP8 runs with scale layout {layout}", file=sys.stderr)
            break
        except (RuntimeError, ValueError) as e:
            print(f"block-scaled FP8 with scale layout {layout}: {str(e).splitlines()[0]}", file=sys.stderr)
    if not LAYOUTS:
        KERNELS.pop()
    version = f"torch-{torch.__version__.split('+')[0]}"
    rows = ["version,kernel_source,gemm_dtype,m,n,k,latency"]
    seen = set()
    for h, inter, q, kv, d in SHAPES.values():
        for tp in TPS:
            for n, k in linears(h, inter, q, kv, d, tp):
                for m in MS:
                    for dtype, source in KERNELS:
                        if (dtype, m, n, k) in seen or (dtype != "bfloat16" and m < 16):
                            continue
                        seen.add((dtype, m, n, k))
                        try:
                            ms = measure(m, n, k, dtype)
                        except (RuntimeError, ValueError) as e:  # a shape the library refuses: say so, go on
                            print(f"skipped {dtype} {m}x{n}x{k}: {e}", file=sys.stderr)
                            continue
                        rows.append(f"{version},{source},{dtype},{m},{n},{k},{ms:.6f}")
                        torch.cuda.empty_cache()
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    print(f"{len(rows) - 1} GEMMs on {torch.cuda.get_device_name()} ({version})")


if __name__ == "__main__":
    main(sys.argv[1])

"""Shared pieces of the calibration fit: data location, catalog GPUs, the
robust fitter, error statistics, and the roofline op models written exactly
as `crates/moeplan/src/ops.rs` costs them (so a fitted parameter means the
same thing here and there, and the fit error is the error the Rust model has).
"""
import json
import os
import re
import tomllib

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, '..', '..'))
DATA = os.path.normpath(os.path.join(REPO, '..', 'shared', 'calibration'))
CATALOG = os.path.join(REPO, 'crates', 'moeplan', 'catalog', 'gpus')
PROFILES = os.path.join(REPO, 'crates', 'moeplan', 'profiles')

# Constants of the cost forms (not fitted): fit.py writes them into every
# profile's [kernels], which the Rust model reads, so both use one value.
# Query rows one CTA of the prefill attention kernels takes: the 128-row tile
# of FlashAttention-2/3 and FlashInfer; `cta_half` is counted in these CTAs.
PREFILL_TILE_TOKENS = 128
# Channels per fp32 scale of DeepEP's FP8 dispatch (e4m3 values, one scale per
# 128 channels: deep_ep/buffer.py, `x` as a (values, scales) pair).
FP8_DISPATCH_BLOCK = 128
# Most of the link a collective's bus bandwidth reaches: caps the curves'
# extrapolation along the 4->8 slope beyond 8 ranks.
COLLECTIVE_EFF_MAX = 0.95

# Measurement folder -> catalog GPU id.
GPU_IDS = {'h100_sxm': 'h100-sxm', 'h200_sxm': 'h200-sxm', 'b200_sxm': 'b200'}
ENGINES = ['vllm', 'sglang', 'trtllm']

# ---------------------------------------------------------------- catalog GPUs
_UNITS = {'': 1.0, 'k': 1e3, 'm': 1e6, 'g': 1e9, 't': 1e12, 'p': 1e15}


def quantity(text):
    """'989.4 TFLOP/s' -> 9.894e14, '3.35 TB/s' -> 3.35e12, '3 us' -> 3e-6."""
    m = re.fullmatch(r'\s*([0-9.]+)\s*([a-zA-Z]*)(?:FLOP/s|B/s|s)?\s*', text)
    if not m:
        raise ValueError(f'cannot read quantity {text!r}')
    v, prefix = float(m.group(1)), m.group(2)
    if text.strip().endswith('us'):
        return v * 1e-6
    return v * _UNITS[prefix.lower()[:1]] if prefix else v


class Gpu:
    """Datasheet figures of a catalog GPU (crates/moeplan/catalog/gpus/<id>.toml)."""

    def __init__(self, gid):
        with open(os.path.join(CATALOG, gid + '.toml'), 'rb') as fh:
            t = tomllib.load(fh)
        self.id = gid
        self.name = t['name']
        self.bw = quantity(t['memory_bandwidth'])
        self.peak = {k: quantity(v) for k, v in t['peak'].items()}
        self.nvlink = quantity(t['links']['nvlink_bandwidth'])
        self.fp4 = 'fp4' in self.peak

    def peak_for(self, wanted):
        """crate::hardware::Gpu::peak_for: the precision and peak a kernel wanting
        `wanted` runs at (4-bit without FP4 tensor cores: 16-bit weight-only)."""
        if wanted == 'fp4' and not self.fp4:
            return 'bf16', self.peak['bf16']
        order = ['fp4', 'fp8', 'int8', 'bf16']
        for p in order[order.index(wanted):]:
            if p == 'int8' and wanted != 'int8':
                continue
            if p in self.peak:
                return p, self.peak[p]
        return 'bf16', self.peak['bf16']


# crate::dtype::DType::bytes (scales included) and preferred_compute.
DTYPE_BYTES = {'bf16': 2.0, 'fp8': 1.0, 'int4': 4.5 / 8, 'mxfp4': 4.25 / 8, 'nvfp4': 4.5 / 8}
PREFERRED = {'bf16': 'bf16', 'fp8': 'fp8', 'int4': 'bf16', 'mxfp4': 'fp4', 'nvfp4': 'fp4'}


def moe_precision(gpu, w):
    """ops.rs CostContext::moe_precision: the math precision of the MoE kernel an
    engine runs for experts stored as `w` (int4 kernels are weight-only; mxfp4
    too on GPUs without FP4 tensor cores, W4A8 with FP8 math on those with)."""
    if w == 'mxfp4' and gpu.fp4:
        return gpu.peak_for('fp8')
    if w in ('mxfp4', 'int4'):
        return gpu.peak_for('bf16')
    return gpu.peak_for(PREFERRED[w])


def manifest():
    with open(os.path.join(DATA, 'manifest.json')) as fh:
        return {e['file']: e for e in json.load(fh)}


def load(gpu_dir, engine, table):
    p = os.path.join(DATA, gpu_dir, engine, table + '.csv') if engine else os.path.join(DATA, gpu_dir, table + '.csv')
    return pd.read_csv(p) if os.path.exists(p) else None


# ---------------------------------------------------------------- fitting
def fit_log(pred_fn, p0, lo, hi, meas, loss='soft_l1', f_scale=0.1, starts=5):
    """Parameters (positive, natural units) minimising a robust loss of
    log(pred/meas); optimised in log space, best of a few starts."""
    p0 = np.asarray(p0, float)
    lo = np.asarray(lo, float)
    hi = np.asarray(hi, float)
    lm = np.log(meas)

    def res(q):
        return np.log(pred_fn(np.exp(q))) - lm

    best = None
    rng = np.random.default_rng(0)
    xs = [np.log(p0)] + [np.log(p0) + rng.normal(0, 0.7, len(p0)) for _ in range(starts - 1)]
    for s in xs:
        s = np.clip(s, np.log(lo) + 1e-9, np.log(hi) - 1e-9)
        r = least_squares(res, s, bounds=(np.log(lo), np.log(hi)), loss=loss, f_scale=f_scale, max_nfev=2000)
        if best is None or r.cost < best.cost:
            best = r
    return np.exp(best.x)


def err_stats(pred, meas):
    """(median, p90, rows) of |pred/meas - 1|."""
    e = np.abs(np.asarray(pred, float) / np.asarray(meas, float) - 1.0)
    if len(e) == 0:
        return None
    return float(np.median(e)), float(np.percentile(e, 90)), int(len(e))


def sample(df, n, seed=0):
    return df if len(df) <= n else df.sample(n, random_state=seed)


# ---------------------------------------------------------------- op models (ops.rs)
def gemm_time(c, gpu, m, n, k, w, overhead=True):
    """CostContext::gemm. `c`: dict eff_max, m_half, mem_eff, overhead_us, quant_eff."""
    prec, peak = gpu.peak_for(PREFERRED[w])
    m = np.asarray(m, float)
    act = 2.0 if prec == 'bf16' else (DTYPE_BYTES['nvfp4'] if prec == 'fp4' else 1.0)
    flop = 2.0 * m * n * k
    byt = n * k * DTYPE_BYTES[w] + m * k * act + m * n * 2.0
    eff = c['eff_max'] * m / (m + c['m_half']) if c['m_half'] > 0 else c['eff_max']
    t = np.maximum(flop / (peak * np.maximum(eff, 1e-6)), byt / (gpu.bw * c['mem_eff']))
    if c.get('quant_eff', 0) > 0 and prec != 'bf16':
        t = t + m * k * 3.0 / (gpu.bw * c['quant_eff'])
    return t + (c['overhead_us'] * 1e-6 if overhead else 0.0)


def gemm_family(gpu, w):
    """The GEMM curve CostContext::gemm uses for weights `w` on `gpu`."""
    prec, _ = gpu.peak_for(PREFERRED[w])
    return {'fp8': 'gemm_fp8', 'fp4': 'gemm_fp4'}.get(prec, 'gemm_bf16')


def bmm_time(c, gpu, heads, m, n, k, overhead=True):
    """CostContext::bmm: `heads` independent bf16 GEMMs [m x k]·[k x n] in one launch."""
    m = np.asarray(m, float)
    heads = np.asarray(heads, float)
    flop = 2.0 * heads * m * n * k
    byt = heads * (n * k * 2.0 + m * k * 2.0 + m * n * 2.0)
    eff = c['eff_max'] * m / (m + c['m_half'])
    t = np.maximum(flop / (gpu.peak['bf16'] * np.maximum(eff, 1e-6)), byt / (gpu.bw * c['mem_eff']))
    return t + (c['overhead_us'] * 1e-6 if overhead else 0.0)


def moe_time(c, gpu, w, T, h, inter, k, E, tp, ep):
    """CostContext::moe_ops_with, `moe_experts` op, for one GPU of a TP group of
    ep·tp GPUs holding E/ep experts at inter/tp width, tokens replicated, under
    the tables' balanced routing (`Routing::Balanced`: the T·k routed rows pick
    min(E, T·k) distinct experts; served tokens route at random)."""
    prec, peak = moe_precision(gpu, w)
    T = np.asarray(T, float)
    e_local = E / ep
    i_local = inter / tp
    rows = T * k / ep
    touched = e_local * np.minimum(1.0, T * k / E)
    tpe = T * k / E
    flop = 6.0 * h * i_local * rows
    byt = touched * 3.0 * h * i_local * DTYPE_BYTES[w] + rows * (2.0 * h + 2.0 * i_local) * 2.0
    eff = c['eff_max'] * tpe / (tpe + c['tpe_half'])
    if c.get('width_half', 0.0) > 0:
        eff = eff * i_local / (i_local + c['width_half'])
    t = np.maximum(flop / (peak * np.maximum(eff, 1e-6)), byt / (gpu.bw * c['mem_eff']))
    rows_pass = T * k * (h + i_local) * 2.0 / (gpu.bw * c['rows_eff'])
    fixed_us = c['overhead_us'] + c['per_local_expert_us'] * e_local + c.get('width_us', 0.0) * i_local
    return t + rows_pass + fixed_us * 1e-6


def causal_pairs(isl, window):
    isl = np.asarray(isl, float)
    w = np.where(np.asarray(window) > 0, window, 1e18).astype(float)
    return np.where(isl <= w, isl * (isl + 1) / 2, w * (w + 1) / 2 + (isl - w) * w)


def prefill_time(c, gpu, b, isl, heads, flop_per_pair, qk_dim, kv_tok, window=0):
    """CostContext::attention_core, prefill part (whole prompts, no offset, cp = 1)."""
    b = np.asarray(b, float)
    isl = np.asarray(isl, float)
    pairs = causal_pairs(isl, window)
    flop = b * flop_per_pair * pairs
    byt = b * isl * (2.0 * heads * qk_dim * 2.0) + b * isl * kv_tok
    ctas = b * heads * np.ceil(isl / float(PREFILL_TILE_TOKENS))
    eff = c['eff_max'] * isl / (isl + c['isl_half']) * ctas / (ctas + c['cta_half'])
    t = np.maximum(flop / (gpu.peak['bf16'] * np.maximum(eff, 1e-6)), byt / (gpu.bw * c['mem_eff']))
    return t + c['overhead_us'] * 1e-6


def decode_time(c, gpu, b, ctx, heads, flop_per_pair, qk_dim, kv_tok, par):
    """CostContext::attention_core, decode part: `par` = b·kv_heads (GQA) or b (MLA)."""
    b = np.asarray(b, float)
    ctx = np.asarray(ctx, float)
    flop = b * flop_per_pair * ctx
    byt = kv_tok * b * ctx + b * heads * qk_dim * 4.0
    mem = c['mem_eff'] * par / (par + c['p_half'])
    t = np.maximum(flop / (gpu.peak['bf16'] * c['eff_compute']), byt / (gpu.bw * mem))
    return t + c['overhead_us'] * 1e-6 + c['per_sequence_us'] * 1e-6 * b


# DeepSeek-V3 MLA shape (the module tables' model).
MLA = dict(h=7168, q_lora=1536, kvl=512, nope=128, rope=64, v=128)


def mla_core_decode_time(c, gpu, b, ctx, nh, kvb):
    s = MLA
    return decode_time(c, gpu, b, ctx, nh, 2.0 * nh * (2 * s['kvl'] + s['rope']), s['kvl'] + s['rope'],
                       (s['kvl'] + s['rope']) * kvb, np.asarray(b, float))


def mla_core_prefill_time(c, gpu, b, isl, nh, kvb):
    s = MLA
    return prefill_time(c, gpu, b, isl, nh, 2.0 * nh * (s['nope'] + s['rope'] + s['v']), s['nope'] + s['rope'],
                        (s['kvl'] + s['rope']) * kvb)


def mla_module_parts(curves, gpu, decode, b, L, nh, w, kvb):
    """Sum of the MLA block's ops (layer_ops, Attention::Mla) before scale and the
    fixed cost: projections (no per-GEMM overhead), absorb BMMs (decode) or kv_b
    (prefill), the core, o_proj. `L`: context (decode) or prompt length (prefill)."""
    s = MLA
    b = np.asarray(b, float)
    L = np.asarray(L, float)
    nh = np.asarray(nh, float)
    t_tok = b if decode else b * L
    g = curves[gemm_family(gpu, w)]
    tot = gemm_time(g, gpu, t_tok, s['q_lora'] + s['kvl'] + s['rope'], s['h'], w, False)
    tot = tot + gemm_time(g, gpu, t_tok, nh * (s['nope'] + s['rope']), s['q_lora'], w, False)
    if decode:
        tot = tot + bmm_time(curves['mla_bmm'], gpu, nh, b, s['kvl'], s['nope'], False)
        tot = tot + bmm_time(curves['mla_bmm'], gpu, nh, b, s['v'], s['kvl'], False)
        tot = tot + mla_core_decode_time(curves['mla_decode_core'], gpu, b, L, nh, kvb)
    else:
        tot = tot + gemm_time(g, gpu, t_tok, nh * (s['nope'] + s['v']), s['kvl'], w, False)
        tot = tot + mla_core_prefill_time(curves['mla_prefill_core'], gpu, b, L, nh, kvb)
    tot = tot + gemm_time(g, gpu, t_tok, s['h'], nh * s['v'], w, False)
    return tot


def collective_time(c_lat_us, c_eff, gpu, factor, byt):
    return c_lat_us * 1e-6 + factor * byt / (gpu.nvlink * c_eff)

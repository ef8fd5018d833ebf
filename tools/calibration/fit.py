#!/usr/bin/env python3
"""Fit one calibration profile per (GPU, engine) to that engine's own kernel timings.

    python3 tools/calibration/fit.py

reads ../shared/calibration (beside the repository) and writes
crates/moeplan/profiles/<gpu-id>-<engine>.toml for every <gpu>/<engine>
folder present, and docs/calibration.md. Peaks and bandwidths come from the
catalog GPU files (crates/moeplan/catalog/gpus/<gpu-id>.toml). The op models
are the ones crates/moeplan/src/ops.rs evaluates (common.py mirrors them), so
the [fit] errors are the errors of the Rust model on the fitted rows.
A family that an engine's tables cannot identify takes a documented fallback
(nearest GPU measured with the same engine, else another engine on the same
GPU) and its [fit] entry says so.
"""
import os
import sys

from common import *  # noqa: F401,F403

SEED = 0
FIT_ROWS = 6000  # rows per family used by the optimiser (errors use every row)

# Every family of a profile, in schema order, with what it is.
FAMILIES = [
    ('gemm_bf16', 'BF16 GEMM'),
    ('gemm_fp8', 'FP8 block-scaled GEMM'),
    ('gemm_fp4', 'NVFP4 GEMM on FP4 tensor cores'),
    ('moe_bf16', 'BF16 fused MoE'),
    ('moe_fp8', 'FP8 block-scaled fused MoE at ep = 1'),
    ('moe_fp8_ep', 'FP8 block-scaled fused MoE at ep > 1'),
    ('moe_int4', 'INT4 weight-only fused MoE'),
    ('moe_mxfp4', 'MXFP4 weight-only (w4a16) fused MoE'),
    ('moe_fp4', 'NVFP4 fused MoE on FP4 tensor cores'),
    ('moe_fp4_marlin', 'FP4 weight-only Marlin MoE (no FP4 tensor cores)'),
    ('attn_prefill', 'GQA/MHA prefill attention'),
    ('attn_decode', 'GQA/MHA decode attention'),
    ('mla_prefill_core', 'MLA prefill attention core (non-absorbed)'),
    ('mla_decode_core', 'MLA decode attention core (absorbed, latent KV)'),
    ('mla_bmm', 'MLA absorb BMMs (W_UK, W_UV), bf16'),
    ('mla_overhead', 'MLA block fixed cost'),
    ('mla_prefill_scale', 'MLA prefill block / sum of parts'),
    ('mla_prefill_floor', 'smallest time of an MLA block in a prefill step'),
    ('allreduce', "engine's custom all-reduce (CUDA graph)"),
    ('allreduce_nccl', 'NCCL all-reduce'),
    ('custom_allreduce_max', 'largest message of the custom all-reduce'),
    ('allgather', 'NCCL all-gather / reduce-scatter'),
    ('alltoall_ll', 'EP dispatch/combine, low-latency mode'),
    ('alltoall_ht', 'EP dispatch/combine, high-throughput mode'),
    ('alltoall_ll_max_tokens', 'tokens per GPU up to which low-latency mode runs'),
    ('network_eff', 'inter-node network efficiency'),
    ('nvlink_p2p_eff', 'NVLink point-to-point efficiency (PP activations, CP KV ring)'),
    ('elementwise_overhead', 'fixed cost per elementwise kernel'),
    ('prefill_tile_tokens', 'query rows per CTA of prefill attention'),
    ('fp8_dispatch_block', 'channels per fp32 scale of the FP8 EP dispatch'),
    ('collective_eff_max', 'most of the link a collective reaches'),
]

# Families whose value is an assumption, not a fit: no table measures them.
ASSUMED = {
    'network_eff': (0.8, 'assumption: no inter-node measurements (all tables are one 8-GPU node)'),
    'nvlink_p2p_eff': (0.7, 'assumption: no point-to-point measurements; NCCL send/recv inside a node reaches 0.6-0.8 of the link'),
    'elementwise_overhead': (2.0, 'assumption: norms/activations/residuals are not measured as kernels; 2 us each'),
    # Constants of the forms (common.py says their sources), not fitted.
    'prefill_tile_tokens': (PREFILL_TILE_TOKENS, 'constant of the form: the 128-row query tile of FlashAttention-2/3 and FlashInfer prefill kernels'),
    'fp8_dispatch_block': (FP8_DISPATCH_BLOCK, 'constant of the form: DeepEP FP8 dispatch, e4m3 values with one fp32 scale per 128 channels (deep_ep/buffer.py)'),
    'collective_eff_max': (COLLECTIVE_EFF_MAX, 'assumption: a collective reaches at most 95% of the link when its curve is extrapolated beyond 8 ranks'),
}

# The H100 vLLM curves moeplan used before per-engine profiles (the previous
# crates/moeplan/profiles/h100-sxm-vllm.toml), to report what the new fits
# change. New families are mapped onto what the old kernel selection used.
OLD = {
    'gemm_bf16': dict(eff_max=0.789, m_half=7.8, mem_eff=0.821, overhead_us=3.1, quant_eff=0.0),
    'gemm_fp8': dict(eff_max=0.655, m_half=140.0, mem_eff=0.766, overhead_us=3.1, quant_eff=0.466),
    'moe_bf16': dict(eff_max=0.575, tpe_half=1.55, mem_eff=0.85, overhead_us=41.9, per_local_expert_us=0.0, rows_eff=0.25),
    'moe_fp8': dict(eff_max=0.325, tpe_half=1.58, mem_eff=0.813, overhead_us=42.0, per_local_expert_us=0.0, rows_eff=0.209),
    'moe_fp8_cutlass': dict(eff_max=0.255, tpe_half=1.92, mem_eff=0.746, overhead_us=27.2, per_local_expert_us=0.148, rows_eff=1.47),
    'moe_int4': dict(eff_max=0.280, tpe_half=0.68, mem_eff=0.613, overhead_us=55.4, per_local_expert_us=0.0, rows_eff=0.222),
    'moe_mxfp4': dict(eff_max=0.575, tpe_half=6.72, mem_eff=0.645, overhead_us=61.0, per_local_expert_us=0.0, rows_eff=0.944),
    'moe_fp4_marlin': dict(eff_max=0.208, tpe_half=0.42, mem_eff=0.629, overhead_us=82.1, per_local_expert_us=0.0, rows_eff=0.207),
    'attn_prefill': dict(eff_max=0.579, isl_half=1016.0, cta_half=57.0, mem_eff=0.26, overhead_us=12.8),
    'attn_decode': dict(eff_compute=0.314, mem_eff=0.819, p_half=0.98, overhead_us=12.7, per_sequence_us=0.046),
    'mla_overhead': 96.0,
    'mla_prefill_scale': 1.30,
    'allreduce': dict(latency_us=[4.3, 4.8, 5.4], eff=[0.5822, 0.64, 0.78]),
    'allreduce_nccl': dict(latency_us=[7.3, 10.8, 17.6], eff=[0.5467, 0.6667, 0.7222]),
    'custom_allreduce_max': 8.0,
    'allgather': dict(latency_us=[6.3, 8.4, 12.1], eff=[0.4467, 0.5756, 0.6378]),
    'alltoall_ll': dict(dispatch_latency_us=61.7, combine_latency_us=46.6, dispatch_eff=0.4556, combine_eff=0.4956),
    'alltoall_ht': dict(dispatch_latency_us=252.0, combine_latency_us=86.5, dispatch_eff=0.7689, combine_eff=0.5578),
    'alltoall_ll_max_tokens': 256.0,
}
OLD_MAP = {'gemm_fp4': 'gemm_fp8', 'moe_fp8_ep': 'moe_fp8_cutlass', 'moe_fp4': 'moe_fp8_cutlass',
           'mla_prefill_core': 'attn_prefill', 'mla_decode_core': 'attn_decode'}


def old_curves():
    c = {k: v for k, v in OLD.items()}
    for new, old in OLD_MAP.items():
        c[new] = OLD[old]
    c['mla_bmm'] = OLD['gemm_bf16']
    return c


def log(*a):
    print(*a, flush=True)


def dominant(df, col='kernel_source'):
    """The kernel an engine runs: the most measured one (ties: first by name)."""
    vc = df[col].value_counts()
    top = vc[vc == vc.max()].index
    return sorted(top)[0]


class Family:
    """Rows of one table, the op model that predicts them, and its parameters."""

    def __init__(self, name, table, kernel, rows, meas, pred, params, note=''):
        self.name, self.table, self.kernel, self.rows, self.meas = name, table, kernel, rows, meas
        self.pred, self.params, self.note = pred, params, note

    def fit(self):
        keys = [p[0] for p in self.params]
        idx = np.arange(len(self.meas))
        if len(idx) > FIT_ROWS:
            idx = np.sort(np.random.default_rng(SEED).choice(idx, FIT_ROWS, replace=False))

        def fn(v):
            return self.pred(dict(zip(keys, v)))[idx]
        v = fit_log(fn, [p[1] for p in self.params], [p[2] for p in self.params], [p[3] for p in self.params],
                    self.meas[idx])
        return dict(zip(keys, (float(x) for x in v)))

    def error(self, values):
        return err_stats(self.pred(values), self.meas)


# ---------------------------------------------------------------- NCCL: which block is which op
NCCL_OPS = ['all_gather', 'alltoall', 'reduce_scatter', 'all_reduce']


def nccl_ops(nc):
    """nccl.csv lost its `op` column: every (dtype, num_gpus) sweep appears as
    four contiguous blocks of message sizes, one per collective. Name them
    from bandwidth behaviour (see docs/calibration.md):
    - a reduction (all_reduce, reduce_scatter) is slower with int8 than with
      half at equal bytes (twice the elements to add); pure data movement
      (all_gather, alltoall) is dtype-agnostic;
    - all_reduce moves 2(n-1)/n of the message, the others (n-1)/n: it has the
      lowest algorithm bandwidth of the four;
    - alltoall is one step of n-1 parallel sends: its small-message latency
      barely grows with n, while ring all_gather's grows by n-1 steps.
    Returns the frame with an `op` column and the evidence per block."""
    nc = nc.copy()
    start = (nc.message_size.diff() <= 0) | (nc.nccl_dtype != nc.nccl_dtype.shift()) | (nc.num_gpus != nc.num_gpus.shift())
    nc['block'] = start.cumsum() - 1
    elem = np.where(nc.nccl_dtype == 'int8', 1.0, 2.0)
    nc['bytes'] = nc.message_size * elem
    ev = []
    for b, x in nc.groupby('block'):
        big = x[x.bytes >= 64e6]
        ev.append(dict(block=b, dtype=x.nccl_dtype.iloc[0], n=int(x.num_gpus.iloc[0]),
                       algbw=float(np.median(big.bytes / (big.latency * 1e-3))) / 1e9,
                       small_us=float(x[x.bytes <= 16384].latency.median() * 1e3)))
    ev = pd.DataFrame(ev)
    # Blocks come as (op, half), (op, int8) pairs, four ops per n.
    ev['pos'] = (ev.block // 2) % 4
    names = {}
    for pos in range(4):
        r = ev[ev.pos == pos]
        half, int8 = r[r.dtype == 'half'].set_index('n'), r[r.dtype == 'int8'].set_index('n')
        names[pos] = dict(reduction=float((int8.algbw / half.algbw).median()), algbw=half.algbw.to_dict(),
                          lat_growth=float(half.small_us.loc[half.index.max()] / half.small_us.loc[half.index.min()]))
    # lowest algbw (at every n) -> all_reduce; the other reduction -> reduce_scatter;
    # of the two dtype-agnostic blocks, the flatter latency -> alltoall.
    ar = min(range(4), key=lambda p: np.mean(list(names[p]['algbw'].values())))
    rest = [p for p in range(4) if p != ar]
    rs = min(rest, key=lambda p: names[p]['reduction'])
    moving = [p for p in rest if p != rs]
    a2a = min(moving, key=lambda p: names[p]['lat_growth'])
    ag = [p for p in moving if p != a2a][0]
    order = {ag: 'all_gather', a2a: 'alltoall', rs: 'reduce_scatter', ar: 'all_reduce'}
    assert names[rs]['reduction'] < 0.97 and names[ar]['reduction'] < 0.99, names
    assert all(abs(names[p]['reduction'] - 1) < 0.03 for p in moving), names
    nc['op'] = nc.block.map(lambda b: order[(b // 2) % 4])
    evidence = {order[p]: names[p] for p in range(4)}
    return nc, [order[p] for p in range(4)], evidence


# ---------------------------------------------------------------- families
def gemm_families(gpu, g):
    out, notes = {}, {}
    for fam, dt, w in [('gemm_bf16', 'bfloat16', 'bf16'), ('gemm_fp8', 'fp8_block', 'fp8'), ('gemm_fp4', 'nvfp4', 'nvfp4')]:
        x = g[g.gemm_dtype == dt]
        if fam == 'gemm_fp4' and not gpu.fp4:
            continue  # no FP4 tensor cores: nvfp4 GEMMs run 16-bit weight-only
        if not len(x):
            continue
        excluded = []
        # vLLM's CutlassFp8BlockScaledMM fallback (k < 128 or n < 64) is a flat
        # ~170-200 us path for shapes no model layer has.
        fb = x.kernel_source.str.startswith('CutlassFp8BlockScaled')
        if fb.any():
            excluded.append(f'{int(fb.sum())} rows of the CutlassFp8BlockScaledMM fallback (k < 128 or n < 64)')
            x = x[~fb]
        kernels = sorted(x.kernel_source.unique())
        # A host-side floor (vLLM's isolated fp8_block launches: 60-250 us
        # whatever the shape; SGLang's and TRT-LLM's DeepGEMM rows on the same
        # GPU show none, and CUDA graphs hide it). It is fitted as a floor the
        # measured time cannot go under, `max(kernel, host floor)`, and not
        # written to the profile: inside a CUDA-graph step the kernel's own
        # time is what counts. (Fitting it as an additive overhead charged
        # 56-235 us to every fp8 GEMM of a decode step.)
        host_floor = 0.0
        if dt == 'fp8_block':
            for ks, y in x.groupby('kernel_source'):
                small = y[2.0 * y.m * y.n * y.k < 1e8]
                floor = np.percentile(small.latency, 10) * 1e3 if len(small) else 0.0
                if floor > 30.0:
                    host_floor = max(host_floor, floor)
                    drop = (x.kernel_source.values == ks) & (x.latency.values * 1e3 < 1.5 * floor)
                    x = x[~drop]
                    excluded.append(f'{int(drop.sum())} {ks} rows under 1.5x its {floor:.0f} us host floor; the rest fitted as max(kernel, floor), the floor not charged in CUDA-graph steps')
        m, n, k = x.m.values.astype(float), x.n.values.astype(float), x.k.values.astype(float)
        meas = x.latency.values * 1e-3
        params = [('eff_max', 0.7, 0.02, 1.0), ('m_half', 32, 0.05, 1e5), ('mem_eff', 0.8, 0.05, 1.0),
                  # Behind a host floor the kernel's own fixed cost cannot be
                  # seen: bounded to what the same engine's other GEMMs show.
                  ('overhead_us', 3, 0.1, 5 if host_floor else 500)]
        if w != 'bf16':
            params.append(('quant_eff', 0.5, 0.01, 5.0))
        if host_floor:
            params.append(('host_floor_us', host_floor, 1.0, 1000.0))

        def pred(c, m=m, n=n, k=k, w=w):
            c = dict(c)
            c.setdefault('quant_eff', 0.0)
            floor = c.pop('host_floor_us', 0.0) * 1e-6
            return np.maximum(gemm_time(c, gpu, m, n, k, w), floor)
        out[fam] = Family(fam, 'gemm.csv', ', '.join(kernels), x, meas, pred, params,
                          ('excluded: ' + '; '.join(excluded)) if excluded else '')
    return out


MOE_DTYPES = {'bfloat16': 'bf16', 'fp8_block': 'fp8', 'int4_wo': 'int4', 'w4a16_mxfp4': 'mxfp4', 'w4a8_mxfp4_mxfp8': 'mxfp4', 'nvfp4': 'nvfp4'}


def moe_families(gpu, mo):
    bal = mo[mo.distribution == 'balanced']
    sel = {}
    for dt in ['bfloat16', 'int4_wo', 'nvfp4']:
        x = bal[bal.moe_dtype == dt]
        if len(x):
            fam = {'bfloat16': 'moe_bf16', 'int4_wo': 'moe_int4', 'nvfp4': 'moe_fp4'}[dt]
            if fam == 'moe_fp4' and not gpu.fp4:
                continue
            ks = dominant(x)
            sel[fam] = (x[x.kernel_source == ks], ks, '')
    x = bal[bal.moe_dtype == 'fp8_block']
    for fam, part, what in [('moe_fp8', x[x.moe_ep_size == 1], 'ep = 1 rows'), ('moe_fp8_ep', x[x.moe_ep_size > 1], 'ep > 1 rows')]:
        if len(part):
            ks = dominant(part)
            sel[fam] = (part[part.kernel_source == ks], ks, what)
    x = bal[bal.moe_dtype == 'w4a16_mxfp4']
    marlin = x[x.kernel_source.str.contains('marlin')]
    other = x[~x.kernel_source.str.contains('marlin')]
    # MXFP4 checkpoints (gpt-oss) run weight-only (w4a16) on Hopper; on GPUs
    # with FP4 tensor cores every engine runs them as MXFP4 x MXFP8 (W4A8,
    # FP8 math), the fast path the end-to-end runs show.
    w4a8 = bal[bal.moe_dtype == 'w4a8_mxfp4_mxfp8']
    if gpu.fp4 and len(w4a8):
        ks = dominant(w4a8)
        sel['moe_mxfp4'] = (w4a8[w4a8.kernel_source == ks], ks, 'w4a8_mxfp4_mxfp8 rows: what engines run for MXFP4 weights on FP4 tensor cores')
    elif len(other):
        ks = dominant(other)
        sel['moe_mxfp4'] = (other[other.kernel_source == ks], ks, '')
    if len(marlin):
        ks = dominant(marlin)
        sel['moe_fp4_marlin'] = (marlin[marlin.kernel_source == ks], ks, 'w4a16_mxfp4 Marlin rows stand for FP4 Marlin')
    out = {}
    for fam, (x, ks, what) in sel.items():
        w = MOE_DTYPES[x.moe_dtype.iloc[0]]
        cols = [x[c].values.astype(float) for c in ['num_tokens', 'hidden_size', 'inter_size', 'topk', 'num_experts', 'moe_tp_size', 'moe_ep_size']]
        meas = x.latency.values * 1e-3

        def pred(c, cols=cols, w=w):
            return moe_time(c, gpu, w, *cols)
        params = [('eff_max', 0.4, 0.01, 1.0), ('tpe_half', 2, 0.01, 1e4), ('mem_eff', 0.7, 0.02, 1.0),
                  ('overhead_us', 30, 0.1, 2000), ('per_local_expert_us', 0.1, 1e-6, 50), ('rows_eff', 0.5, 0.003, 100),
                  ('width_us', 0.002, 1e-7, 0.1), ('width_half', 50, 1e-2, 1e5)]
        out[fam] = Family(fam, 'moe.csv', ks, x, meas, pred, params, what + ('; ' if what else '') + 'balanced routing')
    return out


# GQA ratios above this run fallback kernels in some engines (TensorRT-LLM
# decode is ~4x slower at 48-128 query heads per KV head) and no catalog model
# has them (the largest is 16): such rows are left out of the fits.
MAX_GQA_RATIO = 32
GQA_NOTE = f'query/KV head ratios up to {MAX_GQA_RATIO}'


def attention_families(gpu, ap, ad):
    out = {}
    if ap is not None:
        ks = dominant(ap)
        x = ap[(ap.kernel_source == ks) & (ap.num_heads <= MAX_GQA_RATIO * ap.num_key_value_heads)]
        kvb = np.where(x.kv_cache_dtype.values == 'fp8', 1.0, 2.0)
        h, kv, d = (x[c].values.astype(float) for c in ['num_heads', 'num_key_value_heads', 'head_dim'])
        b, isl, win = x.batch_size.values, x.isl.values, x.window_size.values

        def pred(c, b=b, isl=isl, h=h, kv=kv, d=d, kvb=kvb, win=win):
            return prefill_time(c, gpu, b, isl, h, 4.0 * h * d, d, 2.0 * kv * d * kvb, win)
        out['attn_prefill'] = Family('attn_prefill', 'attention_prefill.csv', ks, x, x.latency.values * 1e-3, pred,
                                     [('eff_max', 0.5, 0.02, 1.0), ('isl_half', 500, 1, 1e5), ('cta_half', 50, 0.1, 1e5),
                                      ('mem_eff', 0.5, 0.02, 1.0), ('overhead_us', 10, 0.1, 500)], GQA_NOTE)
    if ad is not None:
        ks = dominant(ad)
        x = ad[(ad.kernel_source == ks) & (ad.num_heads <= MAX_GQA_RATIO * ad.num_key_value_heads)]
        kvb = np.where(x.kv_cache_dtype.values == 'fp8', 1.0, 2.0)
        h, kv, d = (x[c].values.astype(float) for c in ['num_heads', 'num_key_value_heads', 'head_dim'])
        b = x.batch_size.values.astype(float)
        ctx = np.where(x.window_size.values > 0, np.minimum(x.step.values, x.window_size.values), x.step.values).astype(float)

        def pred(c, b=b, ctx=ctx, h=h, kv=kv, d=d, kvb=kvb):
            return decode_time(c, gpu, b, ctx, h, 4.0 * h * d, d, 2.0 * kv * d * kvb, b * kv)
        out['attn_decode'] = Family('attn_decode', 'attention_decode.csv', ks, x, x.latency.values * 1e-3, pred,
                                    [('eff_compute', 0.3, 0.01, 1.0), ('mem_eff', 0.8, 0.05, 1.0), ('p_half', 2, 0.01, 1e4),
                                     ('overhead_us', 10, 0.1, 500), ('per_sequence_us', 0.05, 1e-4, 10)], GQA_NOTE)
    return out


def kvb_of(x):
    return np.where(x.kv_cache_dtype.values == 'fp8', 1.0, 2.0)


def mla_core_families(gpu, pc, dc, bm):
    out = {}
    if bm is not None:
        x = bm[bm.bmm_dtype == 'bfloat16']
        ks = dominant(x)
        x = x[x.kernel_source == ks]
        T, nh = x.num_tokens.values.astype(float), x.num_heads.values.astype(float)

        def pred(c, T=T, nh=nh):
            return bmm_time(c, gpu, nh, T, MLA['kvl'], MLA['nope'])
        out['mla_bmm'] = Family('mla_bmm', 'mla_bmm.csv', ks, x, x.latency.values * 1e-3, pred,
                                [('eff_max', 0.5, 0.01, 1.0), ('m_half', 64, 0.05, 1e5), ('mem_eff', 0.6, 0.02, 1.0), ('overhead_us', 4, 0.1, 500)],
                                'bf16 rows; W_UK and W_UV rows alike (same FLOP and bytes)')
    if pc is not None:
        ks = dominant(pc)
        x = pc[pc.kernel_source == ks]
        b, isl, nh, kvb = x.batch_size.values, x.isl.values, x.num_heads.values.astype(float), kvb_of(x)

        def pred(c, b=b, isl=isl, nh=nh, kvb=kvb):
            return mla_core_prefill_time(c, gpu, b, isl, nh, kvb)
        out['mla_prefill_core'] = Family('mla_prefill_core', 'mla_prefill_core.csv', ks, x, x.latency.values * 1e-3, pred,
                                         [('eff_max', 0.5, 0.02, 1.0), ('isl_half', 500, 1, 1e5), ('cta_half', 50, 0.1, 1e5),
                                          ('mem_eff', 0.5, 0.02, 1.0), ('overhead_us', 10, 0.1, 500)])
    if dc is not None:
        ks = dominant(dc)
        x = dc[dc.kernel_source == ks]
        # A core benchmark whose fp8-KV rows run slower than its bf16-KV rows at
        # the same shape measures a dequantising fallback, not the kernel the
        # engine's MLA block runs (SGLang on Hopper: 5x slower here, while its
        # fp8-KV module rows are not): fit the bf16-KV rows only.
        note = ''
        keys = ['num_heads', 'batch_size', 'step']
        r = (x[x.kv_cache_dtype == 'fp8'].groupby(keys).latency.median()
             / x[x.kv_cache_dtype == 'bfloat16'].groupby(keys).latency.median()).dropna()
        if len(r) and r.median() > 1.5:
            note = f'fp8-KV rows excluded: {r.median():.1f}x slower than bf16 KV at equal shape (a dequantising fallback)'
            x = x[x.kv_cache_dtype != 'fp8']
        b, ctx, nh, kvb = x.batch_size.values.astype(float), x.step.values.astype(float), x.num_heads.values.astype(float), kvb_of(x)

        def pred(c, b=b, ctx=ctx, nh=nh, kvb=kvb):
            return mla_core_decode_time(c, gpu, b, ctx, nh, kvb)
        out['mla_decode_core'] = Family('mla_decode_core', 'mla_decode_core.csv', ks, x, x.latency.values * 1e-3, pred,
                                        [('eff_compute', 0.3, 0.01, 1.0), ('mem_eff', 0.8, 0.05, 1.0), ('p_half', 2, 0.01, 1e4),
                                         ('overhead_us', 10, 0.1, 500), ('per_sequence_us', 0.05, 1e-4, 10)], note)
    return out


GEMM_TYPES = {'bfloat16': 'bf16', 'fp8_block': 'fp8', 'nvfp4': 'nvfp4'}


def module_rows(x, decode, ctx_col):
    return dict(b=x.batch_size.values.astype(float), L=(x[ctx_col] if decode else x.isl).values.astype(float),
                nh=x.num_heads.values.astype(float), w=x.gemm_type.map(GEMM_TYPES).values, kvb=kvb_of(x))


def module_parts(curves, gpu, decode, r):
    out = np.zeros(len(r['b']))
    for w in np.unique(r['w']):
        s = r['w'] == w
        out[s] = mla_module_parts(curves, gpu, decode, r['b'][s], r['L'][s], r['nh'][s], w, r['kvb'][s])
    return out


# ---------------------------------------------------------------- collectives
def collective_family(name, table, kernel, x, factor_fn, gpu, note=''):
    """Latency and bandwidth fraction at 2, 4 and 8 ranks (CollectiveCurve)."""
    n = x.num_gpus.values
    f = np.array([factor_fn(v) for v in n])
    byt = x.bytes.values.astype(float)
    idx = np.searchsorted([2, 4, 8], n)

    def pred(c):
        lat = np.asarray(c['latency_us'])[idx]
        eff = np.asarray(c['eff'])[idx]
        return collective_time(lat, eff, gpu, f, byt)
    return Family(name, table, kernel, x, x.latency.values * 1e-3, pred, None, note)


def fit_collective(fam):
    lat, eff = [], []
    n = fam.rows.num_gpus.values
    for v in [2, 4, 8]:
        s = n == v
        byt = fam.rows.bytes.values[s].astype(float)
        f = 2.0 * (v - 1) / v if fam.name.startswith('allreduce') else (v - 1.0) / v
        p = fit_log(lambda q: collective_time(q[0], q[1], fam._gpu, f, byt), [10, 0.6], [0.1, 0.01], [1000, 2.0], fam.meas[s])
        lat.append(float(p[0]))
        eff.append(float(p[1]))
    return dict(latency_us=lat, eff=eff)


def alltoall_rows(engine, gdir):
    """(LL frame, HT frame, backends, ll_max_tokens) with columns tokens, topk,
    hidden, ep, dispatch_s, combine_s."""
    if engine == 'sglang':
        ll = load(gdir, engine, 'deepep_low_latency')
        ht = load(gdir, engine, 'deepep_normal')
        if ll is None or ht is None:
            return None
        ht = ht[(ht.dispatch_sms == 20) & (ht.combine_sms == 20)]
        f = lambda d, disp, comb: pd.DataFrame(dict(tokens=d.num_token.values, topk=d.num_topk.values, hidden=d.hidden_size.values,
                                                    experts=d.num_experts.values, ep=8 * d.node_num.values,
                                                    dispatch_s=disp * 1e-6, combine_s=comb * 1e-6))
        return (f(ll, ll.dispatch_avg_t_us.values, ll.combine_avg_t_us.values),
                f(ht, ht.dispatch_transmit_us.values + ht.dispatch_notify_us.values, ht.combine_transmit_us.values + ht.combine_notify_us.values),
                ('deepep_low_latency.csv (DeepEP low-latency)', 'deepep_normal.csv (DeepEP normal, 20 SMs)'))
    a2a = load(gdir, engine, 'moe_all_to_all')
    if a2a is None:
        return None
    backends = {'vllm': ('deepep_ll', 'deepep_ht'), 'trtllm': ('trtllm_deepep_ll', 'trtllm_deepep_ht')}[engine]
    if 'bfloat16' in set(a2a.comm_dtype):
        a2a = a2a[a2a.comm_dtype == 'bfloat16']
    frames = []
    for be in backends:
        x = a2a[a2a.comm_backend == be]
        keys = ['num_tokens', 'topk', 'hidden_size', 'num_experts', 'ep_size']
        d = x[x.phase == 'dispatch'].groupby(keys).latency.median().rename('dispatch')
        c = x[x.phase == 'combine'].groupby(keys).latency.median().rename('combine')
        j = pd.concat([d, c], axis=1, join='inner').reset_index()
        frames.append(pd.DataFrame(dict(tokens=j.num_tokens.values, topk=j.topk.values, hidden=j.hidden_size.values,
                                        experts=j.num_experts.values, ep=j.ep_size.values,
                                        dispatch_s=j['dispatch'].values * 1e-6, combine_s=j['combine'].values * 1e-6)))
    return frames[0], frames[1], tuple(f'moe_all_to_all.csv {b} (bf16 payloads)' for b in backends)


def a2a_payload(x):
    return x.tokens.values * x.topk.values * x.hidden.values * 2.0 * (x.ep.values - 1) / x.ep.values


def fit_alltoall(x, gpu):
    byt = a2a_payload(x)
    out, errs = {}, []
    for ph in ['dispatch', 'combine']:
        meas = x[ph + '_s'].values
        p = fit_log(lambda q: q[0] * 1e-6 + byt / (gpu.nvlink * q[1]), [30, 0.4], [0.1, 0.005], [5000, 2.0], meas)
        out[ph + '_latency_us'] = float(p[0])
        out[ph + '_eff'] = float(p[1])
    return out


def alltoall_pred(c, x, gpu):
    byt = a2a_payload(x)
    return np.concatenate([c['dispatch_latency_us'] * 1e-6 + byt / (gpu.nvlink * c['dispatch_eff']),
                           c['combine_latency_us'] * 1e-6 + byt / (gpu.nvlink * c['combine_eff'])])


def alltoall_meas(x):
    return np.concatenate([x.dispatch_s.values, x.combine_s.values])


def skew_ratios(mo, kernels):
    """Skewed (power-law) over balanced latency on exactly matched MoE
    configurations of the fitted kernels, and the compact form
    ratio = 1 + a·log2(ep + 1)·(1 − exp(−tpe/t0)) per skew."""
    keys = ['moe_dtype', 'kernel_source', 'num_tokens', 'hidden_size', 'inter_size', 'topk', 'num_experts', 'moe_tp_size', 'moe_ep_size']
    mo = mo[mo.kernel_source.isin(kernels)]
    bal = mo[mo.distribution == 'balanced'].groupby(keys).latency.median().rename('bal')
    out = {}
    for dist in sorted(d for d in mo.distribution.unique() if d != 'balanced'):
        pl = mo[mo.distribution == dist].groupby(keys).latency.median().rename('pl')
        j = pd.concat([bal, pl], axis=1, join='inner').reset_index()
        if len(j) < 20:
            continue
        ratio = (j.pl / j.bal).values
        tpe = (j.num_tokens * j.topk / j.num_experts).values
        ep = j.moe_ep_size.values.astype(float)
        q = fit_log(lambda p: 1 + p[0] * np.log2(ep + 1) * (1 - np.exp(-tpe / p[1])), [0.1, 100], [1e-4, 1e-2], [10, 1e5], ratio)
        big = (j.num_tokens.values > 4096) & (ep >= 16)
        e = err_stats(1 + q[0] * np.log2(ep + 1) * (1 - np.exp(-tpe / q[1])), ratio)
        out[dist] = dict(pairs=len(j), a=float(q[0]), t0=float(q[1]), err=e,
                         big=float(np.median(ratio[big])) if big.any() else None,
                         small=float(np.median(ratio[j.num_tokens.values <= 128])))
    return out


# ---------------------------------------------------------------- one profile
class Profile:
    def __init__(self, gdir, engine, gpu):
        self.gdir, self.engine, self.gpu = gdir, engine, gpu
        self.id = f'{gpu.id}-{engine}'
        self.curves = {}   # family -> values (dict, or a number)
        self.fit = {}      # family -> dict(table, kernel, median, p90, rows, note) or dict(fallback=...)
        self.old = {}      # family -> (median, p90) of the old H100-vLLM curves on the same rows
        self.tables = {}


def measured(p, fam, name, values, old=None, extra=''):
    # Nuisance terms of a fit (a host-side floor) are not part of the curve,
    # and the error is the curve's own, as ops.rs charges it.
    if isinstance(values, dict):
        values = {k: v for k, v in values.items() if not k.startswith('host_')}
    e = fam.error(values)
    p.curves[name] = values
    p.fit[name] = dict(table=fam.table, kernel=fam.kernel, median=e[0], p90=e[1], rows=e[2],
                       note='; '.join(s for s in [fam.note, extra] if s))
    if old is not None:
        eo = fam.error(old)
        p.old[name] = (eo[0], eo[1])
    log(f'  {name:22s} {fam.table:24s} med {100 * e[0]:5.1f}% p90 {100 * e[1]:6.1f}% n={e[2]:5d}'
        + (f'   (old H100-vLLM curves: {100 * p.old[name][0]:5.1f}% / {100 * p.old[name][1]:6.1f}%)' if name in p.old else '')
        + f'   [{fam.kernel}]')


def fit_profile(gdir, engine, gpu, nccl, man):
    p = Profile(gdir, engine, gpu)
    old = old_curves()
    log(f'\n=== {p.id}')
    ld = lambda t: load(gdir, engine, t)
    # GEMM
    g = ld('gemm')
    for name, fam in gemm_families(gpu, g).items():
        measured(p, fam, name, fam.fit(), old[name])
    # MoE
    mo = ld('moe')
    for name, fam in moe_families(gpu, mo).items():
        measured(p, fam, name, fam.fit(), old[name])
    p.skew = skew_ratios(mo, {p.fit[f]['kernel'] for f in p.fit if f.startswith('moe_')})
    # Attention
    for name, fam in attention_families(gpu, ld('attention_prefill'), ld('attention_decode')).items():
        measured(p, fam, name, fam.fit(), old[name])
    # MLA: bmm and cores where measured alone
    cores = mla_core_families(gpu, ld('mla_prefill_core'), ld('mla_decode_core'), ld('mla_bmm'))
    for name, fam in cores.items():
        measured(p, fam, name, fam.fit(), old[name])
    p._mla_pending = True
    p._tables = dict(decode=ld('mla_decode_module'), prefill=ld('mla_prefill_module'),
                     wide_decode=ld('mla_wideep_decode'), wide_prefill=ld('mla_wideep_prefill'))
    # Collectives: NCCL from the GPU's nccl.csv, the custom all-reduce from the engine's table
    half = nccl[nccl.nccl_dtype == 'half']
    ar = half[half.op == 'all_reduce']
    fam = collective_family('allreduce_nccl', 'nccl.csv', 'NCCL all_reduce (inferred block)', ar, lambda n: 2.0 * (n - 1) / n, gpu)
    fam._gpu = gpu
    measured(p, fam, 'allreduce_nccl', fit_collective(fam), old['allreduce_nccl'])
    ag = half[half.op.isin(['all_gather', 'reduce_scatter'])]
    fam = collective_family('allgather', 'nccl.csv', 'NCCL all_gather + reduce_scatter (inferred blocks)', ag, lambda n: (n - 1.0) / n, gpu)
    fam._gpu = gpu
    measured(p, fam, 'allgather', fit_collective(fam), old['allgather'])
    ca = ld('custom_allreduce')
    if ca is not None:
        if 'backend' in ca:
            ca = ca[ca.backend.str.endswith('graph')]
        ca = ca.assign(bytes=ca.message_size * 2.0)
        kern = dominant(ca)
        # Largest message the engine's own kernel handles: above it the engine
        # hands the message to NCCL, and its table shows NCCL's time. Taken at
        # 8 GPUs as the largest message still >= 10% faster than NCCL.
        j = ca[ca.num_gpus == 8].set_index('bytes').latency.to_frame('c').join(
            ar[ar.num_gpus == 8].set_index('bytes').latency.rename('n'), how='inner')
        faster = j.index[(j.n / j.c) >= 1.10]
        cmax = float(faster.max()) if len(faster) else float(j.index.min())
        cmax_mib = cmax / 2 ** 20
        x = ca[ca.bytes <= cmax]
        fam = collective_family('allreduce', 'custom_allreduce.csv', kern, x, lambda n: 2.0 * (n - 1) / n, gpu,
                                f'messages up to custom_allreduce_max ({cmax_mib:g} MiB)')
        fam._gpu = gpu
        measured(p, fam, 'allreduce', fit_collective(fam), old['allreduce'])
        p.curves['custom_allreduce_max'] = cmax_mib
        p.fit['custom_allreduce_max'] = dict(table='custom_allreduce.csv', kernel=kern, median=None, p90=None, rows=int(len(j)),
                                             note=f'largest message at 8 GPUs where the engine\'s all-reduce is >= 10% faster than NCCL all_reduce: {cmax_mib:g} MiB')
    # All-to-all
    a = alltoall_rows(engine, gdir)
    if a is not None:
        ll, ht, names = a
        llmax = float(ll.tokens.max())
        for name, x, src in [('alltoall_ll', ll, names[0]), ('alltoall_ht', ht, names[1])]:
            c = fit_alltoall(x, gpu)
            fam = Family(name, src.split(' ')[0], src, x, alltoall_meas(x), lambda c, x=x: alltoall_pred(c, x, gpu), None,
                         'dispatch and combine rows; bytes = T*k*h*2*(ep-1)/ep')
            measured(p, fam, name, c, old[name])
        p.curves['alltoall_ll_max_tokens'] = llmax
        p.fit['alltoall_ll_max_tokens'] = dict(table=names[0].split(' ')[0], kernel=names[0], median=None, p90=None, rows=int(len(ll)),
                                               note=f'largest tokens per GPU the low-latency table measures (the engine\'s low-latency buffer): {llmax:g}')
    for k, (v, why) in ASSUMED.items():
        p.curves[k] = v
        p.fit[k] = dict(fallback=why)
    return p


def fit_mla_modules(p):
    """mla_overhead from the decode module, mla_prefill_scale from the prefill
    module, given the parts; where no core table measured the decode core
    (vLLM), it is fitted jointly with the overhead on the decode module."""
    t, gpu, old = p._tables, p.gpu, old_curves()
    dec, pre, dctx = t['decode'], t['prefill'], 'step'
    src_d, src_p = 'mla_decode_module.csv', 'mla_prefill_module.csv'
    if dec is None and t['wide_decode'] is not None:
        # SGLang measures the MLA block in its DP-attention (wide-EP) path only;
        # there `isl` is the cached context of the decode step.
        dec, pre, dctx = t['wide_decode'], t['wide_prefill'], 'isl'
        src_d, src_p = 'mla_wideep_decode.csv', 'mla_wideep_prefill.csv'
    if dec is not None:
        ks = dominant(dec)
        x = dec[dec.kernel_source == ks] if dec.kernel_source.nunique() > 1 and src_d.startswith('mla_wideep') else dec
        kern = ', '.join(sorted(x.kernel_source.unique()))
        r = module_rows(x, True, dctx)
        meas = x.latency.values * 1e-3
        joint = 'mla_decode_core' not in p.curves
        if joint:
            keys = ['eff_compute', 'mem_eff', 'p_half', 'mla_overhead']

            def pred(v, r=r):
                c = dict(p.curves)
                c['mla_decode_core'] = dict(eff_compute=v['eff_compute'], mem_eff=v['mem_eff'], p_half=v['p_half'], overhead_us=0.0, per_sequence_us=0.0)
                return module_parts(c, gpu, True, r) + v['mla_overhead'] * 1e-6
            fam = Family('mla_overhead', src_d, kern, x, meas, pred,
                         [('eff_compute', 0.3, 0.01, 1.0), ('mem_eff', 0.8, 0.05, 1.0), ('p_half', 2, 0.01, 1e4), ('mla_overhead', 80, 1, 2000)],
                         'decode core fitted jointly (no core table)')
            v = fam.fit()
            core = dict(eff_compute=v['eff_compute'], mem_eff=v['mem_eff'], p_half=v['p_half'], overhead_us=0.0, per_sequence_us=0.0)
            oldv = dict(eff_compute=OLD['attn_decode']['eff_compute'], mem_eff=OLD['attn_decode']['mem_eff'], p_half=OLD['attn_decode']['p_half'], mla_overhead=OLD['mla_overhead'])
            measured(p, fam, 'mla_overhead', v, None)
            p.curves['mla_overhead'] = v['mla_overhead']
            p.curves['mla_decode_core'] = core
            p.fit['mla_decode_core'] = dict(p.fit['mla_overhead'], note='fitted jointly with mla_overhead on the decode module (no mla_decode_core table); fixed costs in mla_overhead')
            p.old['mla_overhead'] = _old_module(p, True, r, meas)
            p.old['mla_decode_core'] = p.old['mla_overhead']
        else:
            def pred(v, r=r):
                return module_parts(p.curves, gpu, True, r) + v['mla_overhead'] * 1e-6
            fam = Family('mla_overhead', src_d, kern, x, meas, pred, [('mla_overhead', 80, 0.1, 2000)])
            v = fam.fit()
            measured(p, fam, 'mla_overhead', v, None)
            p.curves['mla_overhead'] = v['mla_overhead']
            p.old['mla_overhead'] = _old_module(p, True, r, meas)
    if pre is not None and 'mla_overhead' in p.curves:
        if 'mla_prefill_core' not in p.curves:
            p.curves['mla_prefill_core'] = dict(p.curves['attn_prefill'])
            p.fit['mla_prefill_core'] = dict(fallback=f'attn_prefill of this profile: {p.engine} runs MLA prefill (qk 192, v 128) with the same '
                                                      f'prefill attention kernels as GQA ({p.fit["attn_prefill"]["kernel"]}); no mla_prefill_core table')
        ks = dominant(pre)
        x = pre[pre.kernel_source == ks] if pre.kernel_source.nunique() > 1 and src_p.startswith('mla_wideep') else pre
        kern = ', '.join(sorted(x.kernel_source.unique()))
        r = module_rows(x, False, None)
        meas = x.latency.values * 1e-3
        oh = p.curves['mla_overhead']

        parts = module_parts(p.curves, gpu, False, r)

        def pred(v, parts=parts):
            return np.maximum(v['mla_prefill_scale'] * parts + oh * 1e-6, v['mla_prefill_floor'] * 1e-6)
        fam = Family('mla_prefill_scale', src_p, kern, x, meas, pred, [('mla_prefill_scale', 1.0, 0.05, 20), ('mla_prefill_floor', 50, 0.1, 5000)],
                     'max(scale x parts + mla_overhead, floor)')
        v = fam.fit()
        measured(p, fam, 'mla_prefill_scale', v, None)
        p.curves['mla_prefill_scale'] = v['mla_prefill_scale']
        p.curves['mla_prefill_floor'] = v['mla_prefill_floor']
        p.fit['mla_prefill_floor'] = dict(p.fit['mla_prefill_scale'], note='fitted with mla_prefill_scale')
        p.old['mla_prefill_scale'] = _old_module(p, False, r, meas)


def _old_module(p, decode, r, meas):
    c = old_curves()
    pred = module_parts(c, p.gpu, decode, r)
    pred = (pred if decode else OLD['mla_prefill_scale'] * pred) + OLD['mla_overhead'] * 1e-6
    e = err_stats(pred, meas)
    return e[0], e[1]


# ---------------------------------------------------------------- fallbacks
def gpu_distance(a, b):
    return (abs(np.log(a.peak['bf16'] / b.peak['bf16'])) + abs(np.log(a.bw / b.bw)) + (0 if a.fp4 == b.fp4 else 1))


def fill_fallbacks(profiles):
    for p in profiles:
        for fam, _ in FAMILIES:
            if fam in p.fit:
                continue
            cands = [q for q in profiles if q is not p and fam in q.fit and 'fallback' not in q.fit[fam]]
            same_engine = sorted([q for q in cands if q.engine == p.engine], key=lambda q: gpu_distance(p.gpu, q.gpu))
            same_gpu = sorted([q for q in cands if q.gpu.id == p.gpu.id], key=lambda q: ENGINES.index(q.engine))
            if fam in ('gemm_fp4', 'moe_fp4') and not p.gpu.fp4:
                src, why = (same_engine or same_gpu or [None])[0], f'unused on {p.gpu.id} (no FP4 tensor cores: nvfp4 runs weight-only); kept for GPUs scaled from this profile'
            elif same_engine:
                src, why = same_engine[0], f'no {p.engine} rows for it on {p.gpu.id}'
            elif same_gpu:
                src, why = same_gpu[0], f'{p.engine} has no rows for it on any GPU'
            else:
                raise SystemExit(f'{p.id}: no source for {fam}')
            p.curves[fam] = src.curves[fam]
            p.fit[fam] = dict(fallback=f'{src.id} value ({why})')
            log(f'  {p.id}: {fam} <- {src.id} ({why})')


# ---------------------------------------------------------------- output
def fmt(v):
    if isinstance(v, float):
        return f'{v:.4g}' if abs(v) < 1e4 else f'{v:.1f}'
    return str(v)


def toml_table(name, d, comment=None):
    out = []
    if comment:
        out.append(f'# {comment}')
    out.append(f'[kernels.{name}]')
    for k, v in d.items():
        if isinstance(v, list):
            out.append(f'{k} = [{", ".join(fmt(x) for x in v)}]')
        else:
            out.append(f'{k} = {fmt(v)}')
    return '\n'.join(out)


def kernel_comment(p, fam):
    f = p.fit[fam]
    if 'fallback' in f:
        return 'fallback: ' + f['fallback']
    return f'{f["table"]}: {f["kernel"]}' + (f' ({f["note"]})' if f.get('note') else '')


def versions(gdir, engine, man):
    files = {k: v for k, v in man.items() if k.startswith(f'{gdir}/{engine}/')}
    vs = {}
    for k, v in files.items():
        ver = v['source'].split('/')[3]
        vs.setdefault(ver, []).append(os.path.basename(k))
    main = max(vs, key=lambda v: len(vs[v]))
    return main, vs, files


def write_profile(p, man, nccl_ver):
    ver, vs, files = versions(p.gdir, p.engine, man)
    others = '; '.join(f'{", ".join(sorted(t))} from {v}' for v, t in vs.items() if v != ver)
    name = {'vllm': 'vLLM', 'sglang': 'SGLang', 'trtllm': 'TensorRT-LLM'}[p.engine]
    source = (f'{name} {ver} kernels measured on {p.gpu.name} (AIConfigurator 0.12.0 database), '
              f'fitted by tools/calibration/fit.py; docs/calibration.md')
    p.tables_note = f'{len(files)} tables of {name} {ver}{" (" + others + ")" if others else ""}, NCCL {nccl_ver}'
    L = [f'# Calibration profile: {name} {ver} kernels on {p.gpu.name}.',
         '# Generated by tools/calibration/fit.py from ../shared/calibration/' + f'{p.gdir}/{p.engine}/ and {p.gdir}/nccl.csv;',
         '# do not edit by hand. Forms and errors: docs/calibration.md.',
         f'# Measurements: {p.tables_note}.',
         f'id = "{p.id}"', f'gpu = "{p.gpu.id}"', f'engine = "{p.engine}"', f'engine_version = "{ver}"', f'source = "{source}"', '',
         '[kernels]',
         f'mla_overhead_us = {fmt(p.curves["mla_overhead"])}',
         f'mla_prefill_scale = {fmt(p.curves["mla_prefill_scale"])}',
         f'mla_prefill_floor_us = {fmt(p.curves["mla_prefill_floor"])}',
         f'custom_allreduce_max_mib = {fmt(float(p.curves["custom_allreduce_max"]))}',
         f'alltoall_ll_max_tokens = {fmt(float(p.curves["alltoall_ll_max_tokens"]))}',
         f'network_eff = {fmt(p.curves["network_eff"])}',
         f'nvlink_p2p_eff = {fmt(p.curves["nvlink_p2p_eff"])}',
         f'elementwise_overhead_us = {fmt(p.curves["elementwise_overhead"])}',
         f'prefill_tile_tokens = {p.curves["prefill_tile_tokens"]}',
         f'fp8_dispatch_block = {p.curves["fp8_dispatch_block"]}',
         f'collective_eff_max = {fmt(p.curves["collective_eff_max"])}',
         '# ' + ' | '.join(f'{k}: {kernel_comment(p, k)}' for k in ['mla_overhead', 'mla_prefill_scale']),
         '# custom_allreduce_max: ' + kernel_comment(p, 'custom_allreduce_max'),
         '# alltoall_ll_max_tokens: ' + kernel_comment(p, 'alltoall_ll_max_tokens'), '']
    for fam, _ in FAMILIES:
        v = p.curves[fam]
        if isinstance(v, dict):
            d = dict(v)
            if fam.startswith('gemm') or fam == 'mla_bmm':
                d.setdefault('quant_eff', 0.0)
                d = {k: d[k] for k in ['eff_max', 'm_half', 'mem_eff', 'overhead_us', 'quant_eff']}
                if fam == 'mla_bmm':
                    d.pop('quant_eff')
            L.append(toml_table(fam, d, kernel_comment(p, fam)))
            L.append('')
    L.append('# Median / p90 |predicted/measured - 1| of each family on its rows; a')
    L.append('# family no table identifies says where its value comes from.')
    L.append('[fit]')
    for fam, _ in FAMILIES:
        f = p.fit[fam]
        if 'fallback' in f:
            L.append(f'{fam} = {{ table = "fallback", fallback = "{f["fallback"]}" }}')
        elif f['median'] is None:
            L.append(f'{fam} = {{ table = "{f["table"]}", rows = {f["rows"]}, note = "{f["note"]}" }}')
        else:
            note = f', note = "{f["note"]}"' if f.get('note') else ''
            L.append(f'{fam} = {{ table = "{f["table"]}", median = {f["median"]:.3f}, p90 = {f["p90"]:.3f}, rows = {f["rows"]}, kernel = "{f["kernel"]}"{note} }}')
    path = os.path.join(PROFILES, p.id + '.toml')
    with open(path, 'w') as fh:
        fh.write('\n'.join(L) + '\n')
    log(f'wrote {os.path.relpath(path, REPO)}')
    p.version, p.source = ver, source


def pct(e):
    return '–' if e is None or e[0] is None else f'{100 * e[0]:.1f} / {100 * e[1]:.1f}%'


FORMS = open(os.path.join(HERE, 'forms.md')).read()


def write_docs(profiles, nccl_info):
    L = ['# Calibration: one profile per GPU × engine', '',
         'Generated by `python3 tools/calibration/fit.py` (reads `../shared/calibration`, writes',
         '`crates/moeplan/profiles/<gpu>-<engine>.toml` and this file). Do not edit by hand.', '',
         FORMS, '',
         '## NCCL: which block of `nccl.csv` is which collective', '',
         '`nccl.csv` has no `op` column: for every (dtype, num_gpus) the message-size sweep appears',
         'four times in contiguous blocks, one per collective, in the same order on every GPU. The',
         'order was inferred from bandwidth behaviour and `fit.py` re-checks it on every run:', '',
         '- a reduction (all_reduce, reduce_scatter) adds elements: at equal bytes int8 has twice the',
         '  elements of half and runs slower; data movement (all_gather, alltoall) does not care;',
         '- all_reduce moves 2(n−1)/n of the message, the others (n−1)/n: it has the lowest algorithm',
         '  bandwidth (bytes / time) of the four at every n, about half the others at n = 2;',
         '- alltoall is one step of n−1 parallel sends, so its small-message latency hardly grows with',
         '  n, while ring all_gather pays n−1 steps.', '',
         '| GPU | block order | int8/half algbw (per block) | small-message latency n=8 / n=2 (per block) |',
         '|---|---|---|---|']
    for gdir, (order, ev) in nccl_info.items():
        L.append(f'| {GPU_IDS[gdir]} | {", ".join(order)} | ' + ', '.join(f'{ev[o]["reduction"]:.2f}' for o in order)
                 + ' | ' + ', '.join(f'{ev[o]["lat_growth"]:.2f}' for o in order) + ' |')
    L += ['', 'all_gather and reduce_scatter rows (half) fit the `allgather` curve together (the model uses',
          'it for both); all_reduce rows (half) fit `allreduce_nccl`; alltoall rows are not used (expert',
          'all-to-all runs DeepEP, fitted from the engines\' own tables).', '']
    # Summary of main families
    L += ['## Summary: median / p90 |error| of the main families', '',
          'Each cell: this profile\'s fit on its own rows; below it, in brackets, the previous H100 vLLM',
          'curves (the one profile moeplan had) applied to the same rows with this GPU\'s datasheet peaks.',
          '"fallback" marks a family no table of this engine identifies (see each profile).', '']
    main = ['gemm_bf16', 'gemm_fp8', 'gemm_fp4', 'moe_bf16', 'moe_fp8', 'moe_fp8_ep', 'moe_int4', 'moe_mxfp4', 'moe_fp4',
            'attn_prefill', 'attn_decode', 'mla_overhead', 'mla_prefill_scale', 'allreduce', 'alltoall_ll', 'alltoall_ht']
    L.append('| family | ' + ' | '.join(p.id for p in profiles) + ' |')
    L.append('|---|' + '---|' * len(profiles))
    for fam in main:
        cells = []
        for p in profiles:
            f = p.fit[fam]
            if 'fallback' in f:
                cells.append('fallback')
            else:
                o = p.old.get(fam)
                cells.append(pct((f['median'], f['p90'])) + (f'<br>[{pct(o)}]' if o else ''))
        label = {'mla_overhead': 'MLA decode module', 'mla_prefill_scale': 'MLA prefill module'}.get(fam, fam)
        L.append(f'| {label} | ' + ' | '.join(cells) + ' |')
    L.append('')
    L.append('`mla_overhead` / `mla_prefill_scale` rows are the whole MLA block (module tables) as the model sums it.')
    L.append('')
    # Routing skew
    L += ['## Skewed routing', '',
          'The op model is fitted on balanced routing; `serving.rs` adds the load imbalance of skewed',
          'routing (its `REFERENCE_SKEW`). For scale, the measured skewed/balanced latency of the',
          'fitted MoE kernels on exactly matched configurations, and the compact form',
          'ratio ≈ 1 + a·log2(ep + 1)·(1 − exp(−tpe/t0)) (tpe = T·k/E):', '',
          '| profile | skew | pairs | a | t0 | error | median ratio, T > 4096 and ep ≥ 16 | median ratio, T ≤ 128 |',
          '|---|---|---|---|---|---|---|---|']
    for p in profiles:
        for dist, r in p.skew.items():
            big = '–' if r['big'] is None else f"{r['big']:.2f}"
            L.append(f'| {p.id} | {dist} | {r["pairs"]} | {r["a"]:.3f} | {r["t0"]:.0f} | {pct(r["err"])} | {big} | {r["small"]:.2f} |')
    L.append('')
    # Default engine per GPU
    L += ['## Default engine per GPU', '',
          'With no engine named (`Engine::Neutral`) `profile::resolve` takes the profile of the engine that',
          'fits the GPU best: the lowest mean of the per-family median errors over the families every',
          'engine of that GPU measured (fallbacks and assumptions excluded).', '',
          '| GPU | ' + ' | '.join(ENGINES) + ' | default |', '|---|' + '---|' * (len(ENGINES) + 1)]
    for gid in dict.fromkeys(p.gpu.id for p in profiles):
        ps = [p for p in profiles if p.gpu.id == gid]
        common = set.intersection(*[{f for f, v in p.fit.items() if 'fallback' not in v and v.get('median') is not None} for p in ps])
        score = {p.engine: np.mean([p.fit[f]['median'] for f in common]) for p in ps}
        best = min(score, key=lambda e: (score[e], ENGINES.index(e)))
        L.append(f'| {gid} | ' + ' | '.join(f'{100 * score[e]:.1f}%' if e in score else '–' for e in ENGINES) + f' | {best} |')
    L.append('')
    # Per profile
    for p in profiles:
        L += [f'## {p.id}', '', f'{p.source}. Measurements: {p.tables_note}.', '',
              '| family | table | kernel_source fitted | values | median / p90 | rows | old H100-vLLM curves |',
              '|---|---|---|---|---|---|---|']
        for fam, what in FAMILIES:
            f = p.fit[fam]
            v = p.curves[fam]
            vals = ', '.join(f'{k} {fmt(x) if not isinstance(x, list) else "[" + ", ".join(fmt(y) for y in x) + "]"}' for k, x in v.items()) if isinstance(v, dict) else fmt(v)
            if 'fallback' in f:
                L.append(f'| `{fam}` | fallback | {f["fallback"]} | {vals} | – | – | – |')
            else:
                note = f' ({f["note"]})' if f.get('note') else ''
                L.append(f'| `{fam}` | {f["table"]} | {f["kernel"]}{note} | {vals} | '
                         f'{pct((f["median"], f["p90"])) if f["median"] is not None else "–"} | {f["rows"]} | {pct(p.old.get(fam))} |')
        L.append('')
    with open(os.path.join(REPO, 'docs', 'calibration.md'), 'w') as fh:
        fh.write('\n'.join(L))
    log('wrote docs/calibration.md')


def main():
    if not os.path.isdir(DATA):
        sys.exit(f'{DATA} not found')
    man = manifest()
    profiles, nccl_info = [], {}
    for gdir in [d for d in GPU_IDS if os.path.isdir(os.path.join(DATA, d))]:
        gpu = Gpu(GPU_IDS[gdir])
        nc, order, ev = nccl_ops(load(gdir, None, 'nccl'))
        nccl_info[gdir] = (order, ev)
        log(f'{gdir}: nccl blocks {order}')
        for engine in ENGINES:
            if os.path.isdir(os.path.join(DATA, gdir, engine)):
                p = fit_profile(gdir, engine, gpu, nc, man)
                fit_mla_modules(p)
                profiles.append(p)
    fill_fallbacks(profiles)
    nccl_ver = {d: man[f'{d}/nccl.csv']['source'].split('/')[3] for d in nccl_info}
    for p in profiles:
        write_profile(p, man, nccl_ver[p.gdir])
    write_docs(profiles, nccl_info)


if __name__ == '__main__':
    main()

//! The memory claims of a plan, per pool: training state, weights, KV
//! cache, activations, the total per GPU and the utilisation, each against
//! the memory breakdown of the fullest GPU at the mean (typical) and the
//! longest (worst) prompt.

use super::claim::{
    bytes, cause, compare, factor, finding, layout_input, pct, range, unit_slip, Cause, Claim,
    ACTIVATIONS, KV, MEMORY, WEIGHTS,
};
use super::{concurrency, decode_eval, prefill_eval, Finding, PoolEval, Severity};
use crate::memory::{EngineConfig, MemoryBreakdown};
use crate::report::Derivation;
use crate::spec::plan::{Deployment, PhaseClaims, Plan};
use crate::units::{Bytes, Params};

/// Whether a pool keeps its requests' KV cache: a pool that decodes does; a
/// disaggregated prefill pool hands it on to the decode pool.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KvCache {
    Kept,
    HandedOn,
}

/// Checks the memory claims of the whole plan, and of each pool of a
/// disaggregated one.
pub(super) fn memory_all(plan: &Plan, evals: &[PoolEval], out: &mut Vec<Finding>) {
    if let Some(e) = decode_eval(evals) {
        memory(plan, "claims", &plan.claims.overall, e, KvCache::Kept, out);
    }
    if let Deployment::Disaggregated { .. } = plan.deployment {
        if let (Some(c), Some(e)) = (&plan.claims.prefill, prefill_eval(evals)) {
            memory(plan, "claims.prefill", c, e, KvCache::HandedOn, out);
        }
        if let (Some(c), Some(e)) = (&plan.claims.decode, decode_eval(evals)) {
            memory(plan, "claims.decode", c, e, KvCache::Kept, out);
        }
    }
}

/// One pool's memory claims and the breakdowns they are checked against.
struct PoolMemory<'a> {
    plan: &'a Plan,
    /// Where the claims sit in the plan (`claims`, `claims.prefill`, ...).
    prefix: &'a str,
    claims: &'a PhaseClaims,
    eval: &'a PoolEval,
    /// The fullest GPU at the mean prompt.
    typical: &'a MemoryBreakdown,
    /// The fullest GPU at the longest prompt.
    worst: &'a MemoryBreakdown,
    kv: KvCache,
}

impl PoolMemory<'_> {
    /// The dotted key of one of the pool's claims.
    fn field(&self, key: &str) -> String {
        format!("{}.{key}", self.prefix)
    }
}

/// Checks one pool's memory claims (`prefix`: where they sit in the plan).
fn memory(
    plan: &Plan,
    prefix: &str,
    c: &PhaseClaims,
    e: &PoolEval,
    kv: KvCache,
    out: &mut Vec<Finding>,
) {
    training_state(prefix, c, out);
    let (Some(t), Some(w)) = (&e.typical, &e.worst) else {
        return;
    };
    let pm = PoolMemory {
        plan,
        prefix,
        claims: c,
        eval: e,
        typical: &t.memory,
        worst: &w.memory,
        kv,
    };
    if let Some(cw) = c.weights_per_gpu {
        weights_per_gpu(&pm, cw, out);
    }
    if kv == KvCache::Kept {
        kv_cache_per_gpu(&pm, out);
    }
    if let Some(ca) = c.activations_per_gpu {
        activations_per_gpu(&pm, ca, out);
    }
    let ev = memory_evidence(&pm);
    if let Some(cm) = c.memory_per_gpu {
        memory_per_gpu(&pm, cm, &ev, out);
        memory_parts_sum(&pm, cm, out);
    }
    if let Some(u) = c.memory_utilization {
        memory_utilization(&pm, u, ev, out);
    }
}

/// Optimizer states or gradients counted in an inference deployment.
fn training_state(prefix: &str, c: &PhaseClaims, out: &mut Vec<Finding>) {
    for (key, v, what) in [
        ("optimizer_per_gpu", c.optimizer_per_gpu, "optimizer states"),
        ("gradients_per_gpu", c.gradients_per_gpu, "gradients"),
    ] {
        if let Some(b) = v.filter(|b| b.0 > 0.0) {
            out.push(finding(
                Severity::Error,
                "training_state_in_inference",
                format!("{prefix}.{key}"),
                Some(b.to_string()),
                Some(Bytes::ZERO.to_string()),
                format!("{what} ({b}) are counted in an inference deployment: inference keeps no optimizer states and computes no gradients"),
                Derivation::new("inference memory = weights + KV cache + activations + buffers (domain.md §4)", &[]),
                format!("remove {key} and give the memory to the KV cache"),
            ));
        }
    }
}

/// Checks the claimed weights per GPU against the fullest stage's share of
/// the model.
fn weights_per_gpu(pm: &PoolMemory, claimed: Bytes, out: &mut Vec<Finding>) {
    let l = pm.eval.pool.layout;
    let w = Weights::of(pm);
    compare(
        Claim {
            field: pm.field("weights_per_gpu"),
            what: "weights per GPU",
            claimed: claimed.0,
            lo: w.per_gpu,
            hi: w.per_gpu,
            fmt: bytes,
            tol: WEIGHTS,
            causes: w.causes(pm),
            evidence: Derivation::new(
                "this stage's layers: attention and dense ÷ tp, routed experts ÷ (ep × etp), embedding/LM head on their stages ÷ tp; at the stored precision",
                &[
                    ("model_weights", bytes(w.total)),
                    ("pp", l.pp.to_string()),
                    ("tp", l.tp.to_string()),
                    ("ep×etp", (l.ep * l.etp).to_string()),
                    ("fullest_stage", pm.worst.stage.to_string()),
                    layout_input(pm.eval),
                ],
            ),
            fix: format!("weights_per_gpu = \"{}\"", bytes(w.per_gpu)),
        },
        out,
    );
}

/// The figures a weights-per-GPU claim is explained with.
struct Weights {
    /// The fullest GPU's weights.
    per_gpu: f64,
    /// The whole model's weights.
    total: f64,
    /// The whole model's parameters.
    params: f64,
    /// Bytes per expert parameter as stored.
    bpp: f64,
    /// The declared parameter count at that precision, if the model declares one.
    declared: Option<f64>,
    /// The product of every written degree, replicas included.
    all_degrees: f64,
    /// tp × ep.
    shard: f64,
    /// Pipeline stages.
    pp: u32,
}

impl Weights {
    /// The weight figures of a pool.
    fn of(pm: &PoolMemory) -> Weights {
        let m = &pm.plan.scenario.model;
        let l = pm.eval.pool.layout;
        let bpp = m.dtypes.experts.bytes();
        Weights {
            per_gpu: pm.worst.weights_bytes.0,
            total: m.params().weight_bytes.0,
            params: m.params().total.0,
            bpp,
            declared: m.declared_params.map(|d| d * bpp),
            all_degrees: pm.eval.pool.written_product as f64,
            shard: (l.tp * l.ep).max(1) as f64,
            pp: l.pp,
        }
    }

    /// Every mistake that gives a wrong weights-per-GPU figure, the
    /// pipeline ones first.
    fn causes(&self, pm: &PoolMemory) -> Vec<Cause> {
        let mut causes = self.missing_pp_division();
        causes.extend(self.wrong_sharding());
        causes.extend(self.sixteen_bits(pm));
        causes
    }

    /// The weights not divided by the pipeline stages (none without PP).
    fn missing_pp_division(&self) -> Vec<Cause> {
        if self.pp <= 1 {
            return vec![];
        }
        let (pp, shard) = (self.pp, self.shard);
        vec![
            cause(
                self.per_gpu * pp as f64,
                "missing_pp_division",
                format!(
                    "the weights not divided by the {} pipeline stages (missing PP division)",
                    pp
                ),
            ),
            cause(
                self.total / shard,
                "missing_pp_division",
                format!("the weights divided by tp × ep = {shard:.0} but not by the {} pipeline stages (missing PP division)", pp),
            ),
        ]
    }

    /// Unit slips, no sharding, sharding by every degree, and the declared
    /// parameter count in place of the architecture's.
    fn wrong_sharding(&self) -> Vec<Cause> {
        let Weights {
            per_gpu,
            total,
            bpp,
            declared,
            all_degrees,
            shard,
            pp,
            ..
        } = *self;
        let mut causes = vec![
            unit_slip(per_gpu * 1e3, "MB and GB"),
            unit_slip(per_gpu * 1e-3, "MB and GB"),
            cause(total, "unsharded_weights", "the whole model on every GPU: nothing sharded"),
            cause(total / all_degrees, "weights_divided_by_every_degree", format!("the weights divided by every degree (× replicas = {all_degrees:.0}): replicas and attention-DP ranks hold copies; only PP, TP and EP/ETP shard weights")),
        ];
        // Only a model that declares a parameter count can have it misused.
        let Some(declared) = declared else {
            return causes;
        };
        causes.extend([
            cause(declared / shard, "declared_params_used", format!("the declared parameter count × {bpp} bytes ({}) ÷ (tp × ep = {shard:.0}): the declared size is not the architecture's, and the PP stages are not divided out", bytes(declared))),
            cause(declared / all_degrees, "declared_params_used", format!("the declared parameter count × {bpp} bytes ({}) divided by every degree", bytes(declared))),
            cause(declared / (shard * pp as f64), "declared_params_used", format!("the declared parameter count × {bpp} bytes ({}) ÷ (pp × tp × ep): the declared size is not the architecture's", bytes(declared))),
            cause(declared, "declared_params_used", format!("the declared parameter count × {bpp} bytes ({}), unsharded", bytes(declared))),
        ]);
        causes
    }

    /// A checkpoint stored under 16 bits (FP8, MXFP4, NVFP4) read as 16-bit
    /// (none for a 16-bit checkpoint).
    fn sixteen_bits(&self, pm: &PoolMemory) -> Vec<Cause> {
        let experts = &pm.plan.scenario.model.dtypes.experts;
        if experts.bytes() >= 2.0 {
            return vec![];
        }
        let (params, shard) = (self.params, self.shard);
        let sixteen = |d: f64, why: String| cause(params * 2.0 / d, "sixteen_bit_assumed", why);
        vec![
            sixteen(shard, format!("the {} parameters × 2 bytes ÷ (tp × ep = {shard:.0}): sharded right, but at 16 bits where the checkpoint stores its experts in {} ({} in all)", Params(params), experts, bytes(self.total))),
            sixteen(1.0, format!("the {} parameters × 2 bytes, unsharded: 16 bits where the checkpoint stores its experts in {}", Params(params), experts)),
        ]
    }
}

/// How the KV cache per GPU is derived, as evidence.
fn kv_evidence(pm: &PoolMemory) -> Derivation {
    let w = &pm.plan.scenario.workload;
    Derivation::new(
        "requests per attention-DP rank × KV bytes per request on this GPU (layers of the stage, kv heads ÷ tp, tokens ÷ cp) at the context isl + osl",
        &[
            ("requests", concurrency(pm.plan).to_string()),
            ("dp", pm.eval.pool.layout.dp.to_string()),
            ("kv_per_request_at_longest", pm.worst.kv_bytes_per_request.to_string()),
            ("context", format!("{} – {}", w.isl.mean() + w.osl.mean(), w.isl.max + w.osl.mean())),
            layout_input(pm.eval),
        ],
    )
}

/// Checks the claimed KV cache per GPU of a pool that keeps one, or its
/// absence from a memory breakdown that states other parts.
fn kv_cache_per_gpu(pm: &PoolMemory, out: &mut Vec<Finding>) {
    let (mt, mw) = (pm.typical, pm.worst);
    let Some(ck) = pm.claims.kv_cache_per_gpu else {
        kv_cache_missing_from_breakdown(pm, out);
        return;
    };
    if ck.0 == 0.0 && mw.kv_cache_bytes.0 > 0.0 {
        out.push(finding(
            Severity::Error,
            "kv_cache_omitted",
            pm.field("kv_cache_per_gpu"),
            Some(ck.to_string()),
            Some(range(mt.kv_cache_bytes.0, mw.kv_cache_bytes.0, bytes)),
            "the plan puts no KV cache on the GPUs, yet every running request keeps one".into(),
            kv_evidence(pm),
            format!("kv_cache_per_gpu = \"{}\"", mw.kv_cache_bytes),
        ));
        return;
    }
    compare(
        Claim {
            field: pm.field("kv_cache_per_gpu"),
            what: "KV cache per GPU",
            claimed: ck.0,
            lo: mt.kv_cache_bytes.0,
            hi: mw.kv_cache_bytes.0,
            fmt: bytes,
            tol: KV,
            causes: vec![
                cause(
                    mw.kv_bytes_per_request.0,
                    "kv_one_request",
                    "the cache of one request, not of every request in flight",
                ),
                unit_slip(mw.kv_cache_bytes.0 * 1e3, "MB and GB"),
                unit_slip(mt.kv_cache_bytes.0 * 1e-3, "MB and GB"),
            ],
            evidence: kv_evidence(pm),
            fix: format!("kv_cache_per_gpu = \"{}\"", mw.kv_cache_bytes),
        },
        out,
    );
}

/// A memory breakdown that states other parts but leaves out a KV cache
/// that is a tenth or more of the GPU's memory.
fn kv_cache_missing_from_breakdown(pm: &PoolMemory, out: &mut Vec<Finding>) {
    let (c, mt, mw) = (pm.claims, pm.typical, pm.worst);
    let stated = [
        c.weights_per_gpu,
        c.activations_per_gpu,
        c.comm_buffers_per_gpu,
        c.optimizer_per_gpu,
    ]
    .iter()
    .filter(|x| x.is_some())
    .count();
    if (c.memory_per_gpu.is_some() && stated >= 1 || stated >= 2)
        && mw.kv_cache_bytes.0 > 0.1 * mw.total_bytes.0
    {
        out.push(finding(
            Severity::Error,
            "kv_cache_omitted",
            pm.field("kv_cache_per_gpu"),
            None,
            Some(range(mt.kv_cache_bytes.0, mw.kv_cache_bytes.0, bytes)),
            format!(
                "the plan's memory breakdown has no KV cache, yet at its batch and context the KV cache is {} of the {} a GPU holds",
                pct(mw.kv_cache_bytes.0 / mw.total_bytes.0),
                mw.total_bytes
            ),
            kv_evidence(pm),
            format!("add kv_cache_per_gpu = \"{}\" and count it in memory_per_gpu", mw.kv_cache_bytes),
        ));
    }
}

/// Checks the claimed activations per GPU against the largest step's.
fn activations_per_gpu(pm: &PoolMemory, claimed: Bytes, out: &mut Vec<Finding>) {
    let (mt, mw) = (pm.typical, pm.worst);
    let layers = pm.plan.scenario.model.n_layers();
    compare(
        Claim {
            field: pm.field("activations_per_gpu"),
            what: "activations per GPU",
            claimed: claimed.0,
            lo: mt.activation_bytes.0.min(mw.activation_bytes.0),
            hi: mt.activation_bytes.0.max(mw.activation_bytes.0),
            fmt: bytes,
            tol: ACTIVATIONS,
            causes: vec![
                unit_slip(mw.activation_bytes.0 * 1e3, "MB and GB"),
                cause(mw.activation_bytes.0 * layers as f64, "all_layers_activations", "the activations of every layer kept at once; inference keeps one layer's at a time"),
            ],
            evidence: Derivation::new(
                "largest step (max_step_tokens per rank): residual buffers, local q/k/v, routed rows' expert intermediate, fp32 logits",
                &[("max_step_tokens", EngineConfig::default().max_step_tokens.to_string()), layout_input(pm.eval)],
            ),
            fix: format!("activations_per_gpu = \"{}\"", mw.activation_bytes),
        },
        out,
    );
}

/// The fullest GPU's memory, part by part, as evidence.
fn memory_evidence(pm: &PoolMemory) -> Derivation {
    let (mt, mw) = (pm.typical, pm.worst);
    Derivation::new(
        "weights + KV cache + activations + communication buffers + runtime reserve, on the fullest GPU",
        &[
            ("weights", mw.weights_bytes.to_string()),
            ("kv_cache", range(mt.kv_cache_bytes.0, mw.kv_cache_bytes.0, bytes)),
            ("activations", mw.activation_bytes.to_string()),
            ("buffers_and_runtime", mw.other_bytes.to_string()),
            ("capacity", mw.capacity_bytes.to_string()),
            layout_input(pm.eval),
        ],
    )
}

/// Checks the claimed memory per GPU against the GPU's capacity and the
/// computed total.
fn memory_per_gpu(pm: &PoolMemory, claimed: Bytes, ev: &Derivation, out: &mut Vec<Finding>) {
    let (mt, mw) = (pm.typical, pm.worst);
    if claimed.0 > mw.capacity_bytes.0 {
        out.push(finding(
            Severity::Error,
            "above_capacity",
            pm.field("memory_per_gpu"),
            Some(claimed.to_string()),
            Some(mw.capacity_bytes.to_string()),
            format!("the plan puts {claimed} on a GPU of {}", mw.capacity_bytes),
            ev.clone(),
            "shard further (pp, tp, ep) or lower the batch",
        ));
    }
    let kv_hi = match pm.kv {
        KvCache::Kept => mw.kv_cache_bytes.0,
        KvCache::HandedOn => 0.0,
    };
    compare(
        Claim {
            field: pm.field("memory_per_gpu"),
            what: "memory per GPU",
            claimed: claimed.0,
            lo: mt.total_bytes.0,
            hi: mw.total_bytes.0,
            fmt: bytes,
            tol: MEMORY,
            causes: vec![
                cause(
                    mw.total_bytes.0 - kv_hi,
                    "kv_cache_omitted",
                    "the KV cache is left out",
                ),
                cause(
                    mt.total_bytes.0 - mt.kv_cache_bytes.0,
                    "kv_cache_omitted",
                    "the KV cache is left out",
                ),
                unit_slip(mw.total_bytes.0 * 1e3, "MB and GB"),
            ],
            evidence: ev.clone(),
            fix: format!("memory_per_gpu = \"{}\"", mw.total_bytes),
        },
        out,
    );
}

/// Two or more stated memory parts that do not add up to the stated total.
fn memory_parts_sum(pm: &PoolMemory, total: Bytes, out: &mut Vec<Finding>) {
    let c = pm.claims;
    let parts: Vec<Bytes> = [
        c.weights_per_gpu,
        c.kv_cache_per_gpu,
        c.activations_per_gpu,
        c.comm_buffers_per_gpu,
        c.optimizer_per_gpu,
        c.gradients_per_gpu,
    ]
    .iter()
    .flatten()
    .copied()
    .collect();
    if parts.len() < 2 {
        return;
    }
    let sum: Bytes = parts.iter().copied().sum();
    if (sum.0 - total.0).abs() > 0.1 * total.0 {
        out.push(finding(
            Severity::Warning,
            "claims_contradict",
            pm.field("memory_per_gpu"),
            Some(total.to_string()),
            Some(sum.to_string()),
            format!("the plan's memory components add up to {sum}, not to the {total} it states"),
            Derivation::new(
                "sum of the stated components",
                &[(
                    "components",
                    parts
                        .iter()
                        .map(|b| b.to_string())
                        .collect::<Vec<_>>()
                        .join(" + "),
                )],
            ),
            "make the total the sum of its parts",
        ));
    }
}

/// Checks the claimed memory utilisation against the stated memory per GPU
/// and the computed one.
fn memory_utilization(pm: &PoolMemory, claimed: f64, ev: Derivation, out: &mut Vec<Finding>) {
    let (mt, mw) = (pm.typical, pm.worst);
    let capacity = mw.capacity_bytes.0;
    if let Some(cm) = pm.claims.memory_per_gpu {
        utilization_contradicts_total(pm, claimed, cm, out);
    }
    compare(
        Claim {
            field: pm.field("memory_utilization"),
            what: "memory utilisation",
            claimed,
            lo: mt.total_bytes.0 / capacity,
            hi: mw.total_bytes.0 / capacity,
            fmt: pct,
            tol: MEMORY,
            causes: vec![],
            evidence: ev,
            fix: format!(
                "memory_utilization = \"{}\"",
                pct(mw.total_bytes.0 / capacity)
            ),
        },
        out,
    );
}

/// A stated utilisation that is not the stated memory per GPU over the
/// GPU's capacity.
fn utilization_contradicts_total(pm: &PoolMemory, u: f64, cm: Bytes, out: &mut Vec<Finding>) {
    let mw = pm.worst;
    let implied = cm.0 / mw.capacity_bytes.0;
    if (implied - u).abs() > 0.02 && factor(u / implied) > 1.1 {
        out.push(finding(
            Severity::Warning,
            "claims_contradict",
            pm.field("memory_utilization"),
            Some(pct(u)),
            Some(pct(implied)),
            format!(
                "the plan says {} of memory but also {cm} of a {} GPU ({})",
                pct(u),
                mw.capacity_bytes,
                pct(implied)
            ),
            Derivation::new(
                "memory_per_gpu / capacity",
                &[
                    ("memory_per_gpu", cm.to_string()),
                    ("capacity", mw.capacity_bytes.to_string()),
                ],
            ),
            "state one figure and derive the other",
        ));
    }
}

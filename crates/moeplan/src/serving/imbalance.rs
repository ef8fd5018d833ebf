//! Expert load imbalance: how much busier the busiest EP rank is than the mean.

/// Expected max/mean − 1 of routed rows over `ep` ranks for `rows` routed
/// rows, with expert popularity ∝ (rank + 1)^−skew. Experts sit on ranks in
/// a fixed pseudo-random order (popularity is unrelated to expert ids);
/// redundant slots replicate the hottest experts and a greedy placement
/// (EPLB) balances them. The finite-sample part uses a normal
/// approximation of the busiest of `ep` ranks: σ·√(2 ln ep).
pub fn load_imbalance(n_experts: u64, ep: u32, redundant: u32, rows: f64, skew: f64) -> f64 {
    if ep <= 1 || n_experts == 0 {
        return 0.0;
    }
    let systematic = systematic_imbalance(n_experts, ep, redundant, skew);
    let mu = rows / ep as f64;
    let statistical = if mu > 0.0 {
        (mu * (1.0 - 1.0 / ep as f64)).sqrt() * (2.0 * (ep as f64).ln()).sqrt() / mu
    } else {
        0.0
    };
    (1.0 + systematic) * (1.0 + statistical) - 1.0
}

/// Key of a memoised placement: experts, ep, redundant slots, skew bits.
type PlacementKey = (u64, u32, u32, u64);

thread_local! {
    /// The last placements computed on this thread: a planner evaluates
    /// many layouts of one model, so a handful of (ep, redundant, skew)
    /// combinations recur. Pure function of its key, so results are
    /// identical with or without the memo.
    static PLACEMENTS: std::cell::RefCell<Vec<(PlacementKey, f64)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// max/mean − 1 of the popularity placed on the busiest rank (no sampling noise).
fn systematic_imbalance(n_experts: u64, ep: u32, redundant: u32, skew: f64) -> f64 {
    let key = (n_experts, ep, redundant, skew.to_bits());
    if let Some(v) = PLACEMENTS.with(|c| c.borrow().iter().find(|(k, _)| *k == key).map(|x| x.1)) {
        return v;
    }
    let v = placement_imbalance(n_experts, ep, redundant, skew);
    PLACEMENTS.with(|c| {
        let mut c = c.borrow_mut();
        if c.len() >= 32 {
            c.remove(0);
        }
        c.push((key, v));
    });
    v
}

fn placement_imbalance(n_experts: u64, ep: u32, redundant: u32, skew: f64) -> f64 {
    let e = n_experts as usize;
    let ep_us = ep as usize;
    // x^0 = 1 exactly: uniform routing needs no powers.
    let mut pop: Vec<f64> = if skew == 0.0 {
        vec![1.0; e]
    } else {
        (0..e).map(|i| ((i + 1) as f64).powf(-skew)).collect()
    };
    let sum: f64 = pop.iter().sum();
    pop.iter_mut().for_each(|p| *p /= sum);
    let slots = e + redundant as usize;
    let per_rank = slots.div_ceil(ep_us);
    let mut load = vec![0.0f64; ep_us];
    if redundant == 0 {
        // Contiguous blocks of expert ids, popularity order scrambled:
        // expert `id` has popularity rank `id · stride mod e`.
        let start = ((e as f64) * 0.618).round() as usize;
        let stride = (start.max(1)..e.max(2))
            .find(|s| gcd(*s, e) == 1)
            .unwrap_or(1)
            % e.max(1);
        let mut rank_by_pop = 0usize;
        for id in 0..e {
            load[(id / per_rank).min(ep_us - 1)] += pop[rank_by_pop];
            rank_by_pop += stride;
            if rank_by_pop >= e {
                rank_by_pop -= e;
            }
        }
    } else {
        let mut items: Vec<f64> = Vec::with_capacity(slots);
        let hot = (redundant as usize).min(e);
        for (i, p) in pop.iter().enumerate() {
            if i < hot {
                items.push(p / 2.0);
                items.push(p / 2.0);
            } else {
                items.push(*p);
            }
        }
        items.sort_by(|a, b| b.total_cmp(a));
        let mut used = vec![0usize; ep_us];
        for it in items {
            let r = (0..ep_us)
                .filter(|r| used[*r] < per_rank)
                .min_by(|a, b| load[*a].total_cmp(&load[*b]).then(a.cmp(b)))
                .unwrap_or(0);
            load[r] += it;
            used[r] += 1;
        }
    }
    let mean = 1.0 / ep as f64;
    let max = load.iter().copied().fold(0.0, f64::max);
    max / mean - 1.0
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The power-law exponent reported as "skewed" when the user assumes
/// uniform routing. 0.5 reproduces the measured slowdown of the fused MoE
/// kernels under the calibration's power-law routing (×1.3–1.6 at EP 8–32
/// for prefill-sized batches of vLLM's H100 kernels; other engines and GPUs
/// in docs/calibration.md, "Skewed routing").
pub(crate) const REFERENCE_SKEW: f64 = 0.5;

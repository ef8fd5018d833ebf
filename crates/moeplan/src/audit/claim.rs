//! Comparing what a plan claims with what moeplan computes: the
//! tolerances of each kind of figure, the likely causes of a mismatch, and
//! the [`Finding`] that reports it. Every family of checks (`checks`,
//! `memory`, `performance`) builds its findings with these.

use super::{Finding, PoolEval, Severity};
use crate::report::Derivation;
use crate::units::{Bytes, Flop, Params, Seconds};

/// How far a claim may be from the computed range before it is doubtful
/// (`ok`) and before it is wrong (`error`), as factors. `one_sided`: only
/// the optimistic direction (`above` true: higher than computed) is a
/// problem; the other side is conservative and gets an info unless it is
/// off by a factor of 100 or more (then it is a slip, not caution).
#[derive(Clone, Copy)]
pub(super) struct Tol {
    ok: f64,
    error: f64,
    optimistic_above: Option<bool>,
}

impl Tol {
    /// The most a conservative claim can be: a latency bound far above the
    /// computed one is loose, not wrong; a throughput 100× below is a slip.
    fn conservative_cap(&self, f: f64) -> Severity {
        match (self.optimistic_above, f >= 100.0) {
            (_, false) => Severity::Info,
            (Some(false), true) => Severity::Warning,
            _ => Severity::Error,
        }
    }
}

impl Tol {
    /// This tolerance, no stricter than the band a measured figure can lie
    /// from moeplan's estimate: a claim within `1 + p90` of the computed
    /// figure is never an error.
    pub(super) fn within_band(self, p90: f64) -> Tol {
        Tol {
            error: self.error.max(1.0 + p90),
            ..self
        }
    }
}

/// The p90 |error| of moeplan's TTFT and TPOT against measured runs, by
/// serving mode (`profiles/error_band.toml`, from `docs/accuracy.md`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBand {
    /// Where the figures come from.
    pub source: String,
    /// Aggregated deployments.
    pub aggregated: ModeBand,
    /// Disaggregated deployments.
    pub disaggregated: ModeBand,
}

/// One mode's p90 |error| (0.49 = 49%).
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModeBand {
    /// Of mean TTFT.
    pub ttft_p90: f64,
    /// Of mean TPOT (and so of throughput per GPU).
    pub tpot_p90: f64,
}

/// The embedded error band.
pub fn error_band() -> &'static ErrorBand {
    static BAND: std::sync::OnceLock<ErrorBand> = std::sync::OnceLock::new();
    BAND.get_or_init(|| {
        toml::from_str(include_str!("../../profiles/error_band.toml"))
            .expect("the embedded error band is valid TOML")
    })
}

/// The band of the mode `evals` are in: disaggregated when a pool prefills.
pub(super) fn band_of(evals: &[PoolEval]) -> ModeBand {
    let b = error_band();
    if evals
        .iter()
        .any(|e| e.role == crate::replica::PoolRole::Prefill)
    {
        b.disaggregated
    } else {
        b.aggregated
    }
}

pub(super) const WEIGHTS: Tol = Tol {
    ok: 1.10,
    error: 1.5,
    optimistic_above: None,
};
pub(super) const MEMORY: Tol = Tol {
    ok: 1.15,
    error: 1.8,
    optimistic_above: None,
};
pub(super) const KV: Tol = Tol {
    ok: 1.15,
    error: 2.0,
    optimistic_above: None,
};
pub(super) const ACTIVATIONS: Tol = Tol {
    ok: 3.0,
    error: 30.0,
    optimistic_above: None,
};
pub(super) const PARAMS: Tol = Tol {
    ok: 1.05,
    error: 1.15,
    optimistic_above: None,
};
pub(super) const FLOP: Tol = Tol {
    ok: 1.25,
    error: 2.0,
    optimistic_above: None,
};
pub(super) const BYTES_PER_TOKEN: Tol = Tol {
    ok: 1.5,
    error: 3.0,
    optimistic_above: None,
};
pub(super) const THROUGHPUT: Tol = Tol {
    ok: 1.35,
    error: 2.5,
    optimistic_above: Some(true),
};
pub(super) const LATENCY: Tol = Tol {
    ok: 1.5,
    error: 3.0,
    optimistic_above: Some(false),
};
pub(super) const BOUND: Tol = Tol {
    ok: 1.5,
    error: 3.0,
    optimistic_above: None,
};

/// A possible explanation of a mismatch: the value the claim would have
/// if the author made this mistake.
pub(super) struct Cause {
    value: f64,
    code: &'static str,
    why: String,
}

/// A likely cause: the claim would be `value` after the mistake `why`.
pub(super) fn cause(value: f64, code: &'static str, why: impl Into<String>) -> Cause {
    Cause {
        value,
        code,
        why: why.into(),
    }
}

/// The cause of a claim off by a factor of 1000: `value` is the claim the
/// slip would give, `units` the pair confused (`MB and GB`).
pub(super) fn unit_slip(value: f64, units: &str) -> Cause {
    cause(
        value,
        "unit_slip",
        format!("a factor of 1000: {units} confused"),
    )
}

/// The cause whose arithmetic comes closest to the claim, within 20% (the
/// seeds' figures are rounded and mix mistakes); None when none does. Each
/// mistake a claim can make needs its own cause, so that the exact one
/// wins over a neighbour that merely falls inside the window.
fn likely(claimed: f64, causes: &[Cause]) -> Option<&Cause> {
    causes
        .iter()
        .filter(|c| c.value > 0.0 && c.value.is_finite())
        .map(|c| ((claimed / c.value).ln().abs(), c))
        .filter(|(d, _)| *d < 1.2f64.ln())
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The claim relative to the computed range: 1 inside, > 1 above, < 1 below.
fn off(claimed: f64, lo: f64, hi: f64) -> f64 {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    if claimed > hi {
        if hi > 0.0 {
            claimed / hi
        } else {
            f64::INFINITY
        }
    } else if claimed < lo {
        claimed / lo
    } else {
        1.0
    }
}

/// How far off a ratio is, as a factor ≥ 1 either way (infinite at 0).
pub(super) fn factor(r: f64) -> f64 {
    if r >= 1.0 {
        r
    } else if r > 0.0 {
        1.0 / r
    } else {
        f64::INFINITY
    }
}

/// A computed range as text: one figure when its ends are within 0.5%.
pub(super) fn range(lo: f64, hi: f64, fmt: fn(f64) -> String) -> String {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    if (hi - lo).abs() <= 0.005 * hi.abs() {
        fmt(hi)
    } else {
        format!("{} – {}", fmt(lo), fmt(hi))
    }
}

/// Bytes as text (`1.436 GB`).
pub(super) fn bytes(v: f64) -> String {
    Bytes(v).to_string()
}
/// A rate in tokens/s and tokens/ms.
pub(super) fn rate(v: f64) -> String {
    format!("{:.1} tokens/s ({:.3} tokens/ms)", v, v / 1e3)
}
/// Seconds as text (`1.275 s`).
pub(super) fn time(v: f64) -> String {
    Seconds(v).to_string()
}
/// A fraction as a percentage.
pub(super) fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}
/// A parameter count as text (`46.70B`).
pub(super) fn params(v: f64) -> String {
    Params(v).to_string()
}
/// FLOP as text (`26.02 GFLOP`).
pub(super) fn flop(v: f64) -> String {
    Flop(v).to_string()
}

/// A claim to compare.
pub(super) struct Claim<'a> {
    pub(super) field: String,
    pub(super) what: &'a str,
    pub(super) claimed: f64,
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) fmt: fn(f64) -> String,
    pub(super) tol: Tol,
    pub(super) causes: Vec<Cause>,
    pub(super) evidence: Derivation,
    pub(super) fix: String,
}

/// Compares a claim with its computed range and pushes a finding when it is
/// off by more than its tolerance, named by its likely cause when one fits.
pub(super) fn compare(c: Claim, out: &mut Vec<Finding>) {
    let r = off(c.claimed, c.lo, c.hi);
    let f = factor(r);
    if f <= c.tol.ok {
        return;
    }
    let above = r > 1.0;
    let optimistic = c.tol.optimistic_above.is_none_or(|a| a == above);
    let severity = if !optimistic {
        c.tol.conservative_cap(f)
    } else if f >= c.tol.error {
        Severity::Error
    } else {
        Severity::Warning
    };
    let found = likely(c.claimed, &c.causes);
    let computed = range(c.lo, c.hi, c.fmt);
    let dir = if above { "above" } else { "below" };
    let mut message = format!(
        "{}: the plan says {}, moeplan computes {} ({} {dir})",
        c.what,
        (c.fmt)(c.claimed),
        computed,
        if f.is_finite() {
            format!("{f:.1}×")
        } else {
            "infinitely".to_string()
        }
    );
    if let Some(k) = found {
        message.push_str(&format!("; likely cause: {}", k.why));
    } else if severity == Severity::Info {
        message.push_str("; conservative, not wrong");
    }
    out.push(Finding {
        severity,
        code: found.map_or("claim_mismatch", |k| k.code),
        field: c.field,
        claimed: Some((c.fmt)(c.claimed)),
        computed: Some(computed),
        message,
        evidence: c.evidence,
        fix: c.fix,
    });
}

/// A finding from its parts.
#[allow(clippy::too_many_arguments)]
pub(super) fn finding(
    severity: Severity,
    code: &'static str,
    field: impl Into<String>,
    claimed: Option<String>,
    computed: Option<String>,
    message: String,
    evidence: Derivation,
    fix: impl Into<String>,
) -> Finding {
    Finding {
        severity,
        code,
        field: field.into(),
        claimed,
        computed,
        message,
        evidence,
        fix: fix.into(),
    }
}

/// The fix that sets the last key of a dotted `field` to `value`
/// (`claims.prefill.ttft` → `ttft = "0.5 s"`).
pub(super) fn set_key(field: &str, value: impl std::fmt::Display) -> String {
    format!(
        "{} = \"{value}\"",
        field.rsplit('.').next().unwrap_or(field)
    )
}

/// The derivation the estimate gives for a figure, or a bare `fallback`
/// formula when it gives none.
pub(super) fn explained(d: Option<&Derivation>, fallback: &str) -> Derivation {
    d.cloned()
        .unwrap_or_else(|| Derivation::new(fallback.to_string(), &[]))
}

/// The layout figures were computed for, as evidence input.
pub(super) fn layout_input(e: &PoolEval) -> (&'static str, String) {
    (
        "layout",
        match e.reference {
            Some(l) if e.valid => format!("{l} (as written)"),
            Some(l) => format!("{l} (nearest valid layout: the written one is invalid)"),
            None => "none".into(),
        },
    )
}

/// A derivation with the layout its figures were computed for added.
pub(super) fn with_layout(mut d: Derivation, e: &PoolEval) -> Derivation {
    let (k, v) = layout_input(e);
    d.inputs.push((k.into(), v));
    d
}

//! How far moeplan's predictions are from measured runs (`moeplan accuracy`).
//!
//! Each run is estimated as it was deployed (its model, GPU, engine, weight
//! types, layout and concurrency) and compared on the two figures a
//! benchmark client reports: mean TTFT and mean TPOT. The error of a figure
//! is `predicted / measured − 1`; summaries give the median and 90th
//! percentile of its absolute value, by group. A run moeplan cannot answer
//! (an unknown model, a layout it calls invalid, a deployment it says does
//! not fit although it ran) is counted as unanswered, with the reason (the
//! CLI warns of each). A GPU the catalog lacks is bad input (`runs::read`).

use crate::calibration::ServingParams;
use crate::fit::{self, Fitted, Sample, Weighting};
use crate::memory::Engine;
use crate::profile::ServingMode;
use crate::runs::{Run, RunDeployment};
use crate::serving::disagg::estimate_disaggregated;
use crate::serving::{estimate_summary, Client};
use crate::units::{Seconds, TokensPerSecond};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

/// The prediction for one run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Predicted {
    /// Mean time to first token.
    pub ttft: Seconds,
    /// Mean time per output token.
    pub tpot: Seconds,
}

/// A run and what moeplan says of it.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// Index of the run in the input.
    pub run: usize,
    /// The prediction, or why there is none.
    pub predicted: Result<Predicted, String>,
    /// Whether the run's model has routed experts (None: model unknown).
    pub moe: Option<bool>,
}

impl Outcome {
    /// Relative errors (TTFT, TPOT) against the run, when answered.
    pub fn errors(&self, run: &Run) -> Option<(f64, f64)> {
        let p = self.predicted.as_ref().ok()?;
        Some((p.ttft / run.ttft - 1.0, p.tpot / run.tpot - 1.0))
    }

    /// The output throughput the predicted latencies give the run's closed
    /// loop (`Run::closed_loop_throughput`), when answered.
    pub fn throughput(&self, run: &Run) -> Option<TokensPerSecond> {
        let p = self.predicted.as_ref().ok()?;
        Some(run.closed_loop_throughput(p.ttft, p.tpot))
    }

    /// Relative error of that throughput against the run's stated one, when
    /// answered and stated.
    pub fn throughput_error(&self, run: &Run) -> Option<f64> {
        Some(self.throughput(run)?.value() / run.throughput?.value() - 1.0)
    }
}

/// The throughput errors of the answered runs that state a throughput
/// (None when none does).
pub fn throughput_errors(runs: &[Run], outcomes: &[Outcome]) -> Option<(usize, ErrorStats)> {
    let errors: Vec<f64> = outcomes
        .iter()
        .filter_map(|o| o.throughput_error(&runs[o.run]))
        .collect();
    (!errors.is_empty()).then(|| (errors.len(), ErrorStats::of(&errors)))
}

/// Predicts one run as it was deployed.
pub fn predict(run: &Run) -> Result<Predicted, String> {
    match run.deployment {
        RunDeployment::Aggregated { .. } => {
            let replica = run.replica().expect("aggregated")?;
            let e = estimate_summary(&replica.input()).map_err(|problems| {
                let rules: Vec<&str> = problems.iter().map(|p| p.rule).collect();
                format!("invalid layout {} ({})", replica.layout, rules.join(", "))
            })?;
            if !e.fits {
                return Err(format!(
                    "predicted not to fit: {} of {} usable on the fullest GPU",
                    e.memory.total_bytes, e.memory.usable_bytes
                ));
            }
            Ok(Predicted {
                ttft: e.ttft,
                tpot: e.tpot,
            })
        }
        RunDeployment::Disaggregated { .. } => {
            let d = run.disaggregated().expect("disaggregated")?;
            let e = estimate_disaggregated(&d.input()).map_err(|problems| {
                let rules: Vec<String> = problems
                    .iter()
                    .map(|(role, p)| format!("{} {}", role.name(), p.rule))
                    .collect();
                format!("invalid layout ({})", rules.join(", "))
            })?;
            if !e.fits {
                return Err(format!(
                    "predicted not to fit: prefill {} of {} usable / decode {} of {} usable",
                    e.prefill.memory.total_bytes,
                    e.prefill.memory.usable_bytes,
                    e.decode.memory.total_bytes,
                    e.decode.memory.usable_bytes
                ));
            }
            Ok(Predicted {
                ttft: e.ttft,
                tpot: e.tpot,
            })
        }
    }
}

/// How a run is predicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Predictor {
    /// `estimate`'s closed form.
    Estimate,
    /// `simulate`'s step-level closed loop.
    Simulate,
}

/// Predicts every run (in parallel; the order of the input is kept).
pub fn evaluate(runs: &[Run]) -> Vec<Outcome> {
    evaluate_with(runs, Predictor::Estimate)
}

/// Predicts every run with `predictor`.
pub fn evaluate_with(runs: &[Run], predictor: Predictor) -> Vec<Outcome> {
    runs.par_iter()
        .enumerate()
        .map(|(i, r)| Outcome {
            run: i,
            predicted: match predictor {
                Predictor::Estimate => predict(r),
                Predictor::Simulate => simulate(r),
            },
            moe: r.model().ok().map(|m| m.moe.is_some()),
        })
        .collect()
}

/// A run as the benchmark drove it, simulated step by step: `concurrency`
/// clients (per replica when aggregated, on the whole deployment when
/// disaggregated) for as many rounds as the engine's fitted serving layer
/// says the benchmark runs (at least 2), with the lengths its client draws.
pub fn simulate(run: &Run) -> Result<Predicted, String> {
    // The run's lengths, its concurrency as clients, the serving layer's rounds.
    let closed = |inp_workload: crate::serving::Workload, rounds: f64| {
        let clients = inp_workload.concurrency.max(1);
        crate::simulate::Traffic {
            arrivals: crate::simulate::Arrivals::Closed { clients },
            isl: crate::simulate::Lengths::drawn_by(run.client, inp_workload.isl.get()),
            osl: crate::simulate::Lengths::drawn_by(run.client, inp_workload.osl.get()),
            requests: clients * rounds.round().max(2.0) as u64,
            duration: None,
            seed: 1,
            warmup: 0,
        }
    };
    let levels = crate::simulate::Levels::default();
    let router = crate::simulate::Router::LeastLoaded;
    let r = match run.deployment {
        RunDeployment::Aggregated { .. } => {
            let replica = run.replica().expect("aggregated")?;
            let inp = replica.input();
            if !inp
                .layout
                .check(inp.model, inp.gpu, inp.redundant_experts)
                .0
                .is_empty()
            {
                return Err(format!("invalid layout {}", replica.layout));
            }
            let t = closed(inp.workload, inp.calibration.serving.rounds);
            crate::simulate::simulate(&inp, 1, router, t, levels)
        }
        RunDeployment::Disaggregated { .. } => {
            let d = run.disaggregated().expect("disaggregated")?;
            let inp = d.input();
            let invalid = [inp.prefill, inp.decode].iter().any(|p| {
                !p.layout
                    .check(inp.model, inp.gpu, p.redundant_experts)
                    .0
                    .is_empty()
            });
            if invalid {
                return Err("invalid layout".into());
            }
            let t = closed(inp.workload, inp.calibration.serving.rounds);
            crate::simulate::simulate_disaggregated(&inp, router, t, levels)
        }
    };
    if r.requests == 0 || r.rejected > 0 {
        return Err("the simulated requests do not fit".into());
    }
    Ok(Predicted {
        ttft: Seconds::new(r.ttft_ms.mean / 1000.0),
        tpot: Seconds::new(r.tpot_ms.mean / 1000.0),
    })
}

/// Median and 90th percentile of |error|, and the median signed error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ErrorStats {
    /// Median |predicted/measured − 1|.
    pub median: f64,
    /// 90th percentile of the same.
    pub p90: f64,
    /// Median predicted/measured − 1 (the bias).
    pub signed_median: f64,
}

impl ErrorStats {
    /// Statistics of relative errors (empty: all zero).
    pub fn of(errors: &[f64]) -> ErrorStats {
        let abs: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
        ErrorStats {
            median: quantile(&abs, 0.5),
            p90: quantile(&abs, 0.9),
            signed_median: quantile(errors, 0.5),
        }
    }
}

/// The `q` quantile (linear interpolation) of `v`; 0 for an empty slice.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return 0.0;
    }
    s.sort_by(f64::total_cmp);
    let pos = q * (s.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// The errors of one group of runs.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Summary {
    /// What the group is (`all`, `engine vllm`, ...).
    pub group: String,
    /// Runs in the group.
    pub runs: usize,
    /// Of which answered.
    pub answered: usize,
    /// TTFT errors of the answered runs (none when no run is answered).
    pub ttft: Option<ErrorStats>,
    /// TPOT errors of the answered runs (none when no run is answered).
    pub tpot: Option<ErrorStats>,
}

/// Summarises the outcomes of the runs `members` selects.
pub(crate) fn summarize(
    group: &str,
    runs: &[Run],
    outcomes: &[Outcome],
    members: impl Fn(&Run, &Outcome) -> bool,
) -> Summary {
    let mut ttft = Vec::new();
    let mut tpot = Vec::new();
    let mut total = 0;
    for o in outcomes {
        let run = &runs[o.run];
        if !members(run, o) {
            continue;
        }
        total += 1;
        if let Some((t, p)) = o.errors(run) {
            ttft.push(t);
            tpot.push(p);
        }
    }
    Summary {
        group: group.to_string(),
        runs: total,
        answered: ttft.len(),
        ttft: (!ttft.is_empty()).then(|| ErrorStats::of(&ttft)),
        tpot: (!tpot.is_empty()).then(|| ErrorStats::of(&tpot)),
    }
}

/// Whether a run is aggregated.
pub(crate) fn is_aggregated(r: &Run) -> bool {
    r.deployment.mode() == ServingMode::Aggregated
}

/// One slice of the standard report below its headline slices.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slice {
    /// Aggregated or disaggregated.
    Mode(ServingMode),
    /// The benchmark client.
    Client(Client),
    /// The engine.
    Engine(Engine),
    /// Concurrency up to this bound (and above the previous one), which
    /// shows where a bias grows or shrinks with load.
    Concurrency(u64),
    /// The GPU.
    Gpu(String),
    /// The model.
    Model(String),
}

/// The upper bounds of the concurrency slices.
const CONCURRENCY_BOUNDS: [u64; 6] = [4, 16, 64, 256, 1024, u64::MAX];

impl Slice {
    /// Every slice `r` belongs to.
    fn of(r: &Run) -> [Slice; 6] {
        let c = r.deployment.concurrency();
        let bound = CONCURRENCY_BOUNDS
            .into_iter()
            .find(|b| c <= *b)
            .unwrap_or(u64::MAX);
        [
            Slice::Mode(r.deployment.mode()),
            Slice::Client(r.client),
            Slice::Engine(r.engine),
            Slice::Concurrency(bound),
            Slice::Gpu(r.gpu.clone()),
            Slice::Model(r.model.clone()),
        ]
    }

    /// Its row label.
    fn label(&self) -> String {
        match self {
            // "agg" and "disagg": tools/accuracy.sh reads the audit's error
            // band from these rows of docs/accuracy.md.
            Slice::Mode(ServingMode::Aggregated) => "mode agg".to_string(),
            Slice::Mode(ServingMode::Disaggregated) => "mode disagg".to_string(),
            Slice::Client(c) => format!("client {}", c.name()),
            Slice::Engine(e) => format!("engine {}", e.name()),
            Slice::Concurrency(bound) => {
                let i = CONCURRENCY_BOUNDS.iter().position(|b| b == bound);
                let low = i
                    .filter(|i| *i > 0)
                    .map_or(1, |i| CONCURRENCY_BOUNDS[i - 1] + 1);
                match *bound {
                    u64::MAX => format!("concurrency {low}+"),
                    b => format!("concurrency {low}-{b}"),
                }
            }
            Slice::Gpu(g) => format!("gpu {g}"),
            Slice::Model(m) => format!("model {m}"),
        }
    }
}

/// The standard report: the headline slices, then by mode, benchmark
/// client, engine, concurrency, GPU and model.
pub fn report(runs: &[Run], outcomes: &[Outcome]) -> Vec<Summary> {
    let hopper = |r: &Run| r.gpu == "h100-sxm" || r.gpu == "h200-sxm";
    let blackwell = |r: &Run| r.gpu == "b200" || r.gpu == "gb200";
    let mut out = vec![
        summarize("all", runs, outcomes, |_, _| true),
        summarize("aggregated MoE on H100/H200", runs, outcomes, |r, o| {
            is_aggregated(r) && hopper(r) && o.moe == Some(true)
        }),
        summarize("aggregated on B200/GB200", runs, outcomes, |r, _| {
            is_aggregated(r) && blackwell(r)
        }),
        summarize("disaggregated", runs, outcomes, |r, _| !is_aggregated(r)),
    ];
    // Each run's slices, once (summarize looks them up by the run's index).
    let of_run: Vec<[Slice; 6]> = runs.iter().map(Slice::of).collect();
    let slices: std::collections::BTreeSet<&Slice> = of_run.iter().flatten().collect();
    for slice in slices {
        out.push(summarize(&slice.label(), runs, outcomes, |_, o| {
            of_run[o.run].contains(slice)
        }));
    }
    out
}

/// Whether two (TTFT, TPOT) pairs are one measurement reported twice: both
/// within 0.1% or 10 µs (train.csv repeats rows of one source file in
/// another, rounded to two decimals of a millisecond; two benchmark runs
/// seldom agree that closely on both figures, and where they do they count
/// as one measurement).
fn same_measurement(a: (f64, f64), b: (f64, f64)) -> bool {
    let close = |x: f64, y: f64| (x - y).abs() <= (1e-3 * x.abs().max(y.abs())).max(1e-5);
    close(a.0, b.0) && close(a.1, b.1)
}

/// The geometric median of `v` (not empty): the median of the logs (for an
/// even count, the geometric mean of the two middle values).
fn geometric_median(v: impl Iterator<Item = f64>) -> f64 {
    let logs: Vec<f64> = v.map(|x| x.max(f64::MIN_POSITIVE).ln()).collect();
    quantile(&logs, 0.5).exp()
}

/// How far runs of the same stated configuration (`Run::setting` and the
/// output length) are from each other, a reference beside moeplan's errors
/// (not a bound on them): each configuration's distinct measurements (a
/// measurement reported twice, `same_measurement`, is one, scored at its
/// first run; the copies are unanswered) against their geometric median,
/// the figure that minimises their summed absolute log error. A predictor
/// that sees only the stated columns gives a configuration one figure, so
/// these errors show how much of the figures the columns leave to
/// something they do not say (worker counts, speculative decoding, a
/// harness) or to chance. A configuration measured once is unanswered.
/// `outcomes` (of the same runs, in order) give each run's MoE flag.
pub fn repeats(runs: &[Run], outcomes: &[Outcome]) -> Vec<Outcome> {
    // Runs that state the same setting and output length are repeats.
    let keys: Vec<String> = runs
        .iter()
        .map(|r| format!("{} {}", r.setting(), r.osl))
        .collect();
    let mut by: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, k) in keys.iter().enumerate() {
        by.entry(k).or_default().push(i);
    }
    let mut scored: Vec<Result<Predicted, String>> =
        vec![Err("no other measurement of its stated configuration".into()); runs.len()];
    for members in by.values() {
        // The distinct measurements, each with the first run that reports it.
        let mut distinct: Vec<(usize, (f64, f64))> = Vec::new();
        for &j in members {
            let m = (runs[j].ttft.0, runs[j].tpot.0);
            match distinct.iter().find(|(_, x)| same_measurement(*x, m)) {
                Some(&(first, _)) => {
                    scored[j] = Err(format!(
                        "a copy of {}'s measurement, which is scored once",
                        runs[first].id
                    ));
                }
                None => distinct.push((j, m)),
            }
        }
        if distinct.len() < 2 {
            continue;
        }
        let median = Predicted {
            ttft: Seconds(geometric_median(distinct.iter().map(|(_, m)| m.0))),
            tpot: Seconds(geometric_median(distinct.iter().map(|(_, m)| m.1))),
        };
        for (j, _) in distinct {
            scored[j] = Ok(median);
        }
    }
    outcomes
        .iter()
        .map(|o| Outcome {
            run: o.run,
            predicted: scored[o.run].clone(),
            moe: o.moe,
        })
        .collect()
}

/// Each run prepared for fitting (None where it is not estimated).
pub fn samples(runs: &[Run]) -> Vec<Option<Sample>> {
    runs.par_iter().map(Sample::of).collect()
}

/// The serving layer of each engine fitted to the answered runs of that
/// engine in `members`, weighed by `weighting`, from the defaults.
pub(crate) fn fit_engines(
    runs: &[Run],
    outcomes: &[Outcome],
    samples: &[Option<Sample>],
    members: impl Fn(&Run) -> bool + Sync,
    weighting: Weighting,
) -> Vec<(Engine, Fitted)> {
    Engine::MEASURED
        .par_iter()
        .map(|&engine| {
            let (chosen, models): (Vec<&Sample>, Vec<&str>) = outcomes
                .iter()
                .filter(|o| o.predicted.is_ok())
                .filter(|o| runs[o.run].engine == engine && members(&runs[o.run]))
                .filter_map(|o| Some((samples[o.run].as_ref()?, runs[o.run].model.as_str())))
                .unzip();
            let start = ServingParams::default();
            (engine, fit::fit(&chosen, &models, weighting, &start))
        })
        .collect()
}

/// Each engine's serving layers fitted to the answered runs, from the
/// defaults: the aggregated one of each benchmark client apart (the first
/// of `Client::ALL` is the table's own), the disaggregated one over every
/// client. What `profiles/serving.toml` holds when `runs` are `train.csv`
/// (`names` names the files).
pub fn serving_table(
    runs: &[Run],
    outcomes: &[Outcome],
    samples: &[Option<Sample>],
    names: &str,
) -> std::collections::BTreeMap<String, crate::profile::EngineServing> {
    let fits = layers(runs, outcomes, samples, |_| true);
    let fit = |f: &Fitted, kind: &str, engine: Engine| crate::profile::ServingFit {
        source: format!(
            "fitted to the {} answered {kind} {} runs of {names}{}",
            f.runs,
            engine.name(),
            f.weighting.note()
        ),
        runs: f.runs,
        loss_before: f.loss_before,
        loss_after: f.loss_after,
        params: f.params,
    };
    let mut table = std::collections::BTreeMap::new();
    for (engine, l) in fits {
        let own = fit(&l.fixed, "aggregated fixed-length", engine);
        table.insert(
            engine.name().to_string(),
            crate::profile::EngineServing {
                source: own.source,
                runs: own.runs,
                loss_before: own.loss_before,
                loss_after: own.loss_after,
                params: own.params,
                inferencemax: (l.inferencemax.runs > 0)
                    .then(|| fit(&l.inferencemax, "aggregated InferenceMAX", engine)),
                disaggregated: (l.disaggregated.runs > 0)
                    .then(|| fit(&l.disaggregated, "disaggregated", engine)),
            },
        );
    }
    table
}

/// One engine's fitted serving layers.
pub(crate) struct Layers {
    /// Aggregated, fixed-length client.
    fixed: Fitted,
    /// Aggregated, InferenceMAX's client.
    inferencemax: Fitted,
    /// Disaggregated, every client.
    disaggregated: Fitted,
}

impl Layers {
    /// The layer that predicts `run`.
    fn of(&self, run: &Run) -> &Fitted {
        self.of_kind(run.deployment.mode(), run.client)
    }

    /// The layer of runs in `mode` under `client`.
    fn of_kind(&self, mode: ServingMode, client: Client) -> &Fitted {
        match (mode, client) {
            (ServingMode::Disaggregated, _) => &self.disaggregated,
            (ServingMode::Aggregated, Client::Fixed) => &self.fixed,
            (ServingMode::Aggregated, Client::InferenceMax) => &self.inferencemax,
        }
    }
}

/// Whether `run` is in the held-back fifth of `hold_out`: chosen by its id
/// (FNV-1a), so a run is held wherever it lies in its file and whatever
/// else the file holds.
pub fn held_back(run: &Run) -> bool {
    let hash = run.id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 5 == 0
}

/// A fifth of the runs held back (`held_back`): the engines' serving
/// layers and the model stacks fitted to the other runs as `calibrate
/// --built-in` and `--built-in-stacks` fit them to every run, and each held
/// run predicted with its stack's layer where the others gave its stack
/// one, else its engine's. One outcome per held run: what moeplan does on
/// runs of the models and stacks it was fitted to that it did not see.
pub fn hold_out(runs: &[Run], outcomes: &[Outcome], samples: &[Option<Sample>]) -> Vec<Outcome> {
    let kept = |r: &Run| !held_back(r);
    let fits = layers(runs, outcomes, samples, kept);
    let layer = |engine: Engine, mode: ServingMode, client: Client| {
        fits.iter()
            .find(|(e, _)| *e == engine)
            .map(|(_, l)| l.of_kind(mode, client).params)
    };
    let stacks = crate::calibrate::fit_stacks(runs, samples, kept, |k| {
        layer(k.engine, k.mode, k.client).unwrap_or_default()
    });
    outcomes
        .iter()
        .filter(|o| held_back(&runs[o.run]))
        .map(|o| {
            let run = &runs[o.run];
            let params = crate::calibrate::stack_key(run)
                .and_then(|k| stacks.iter().find(|s| s.is(&k)))
                .map(|s| s.fit.params)
                .or_else(|| layer(run.engine, run.deployment.mode(), run.client));
            let predicted = match (&o.predicted, &samples[o.run], params) {
                (Ok(_), Some(s), Some(sv)) => {
                    let (ttft, tpot) = s.predict(&sv);
                    Ok(Predicted { ttft, tpot })
                }
                // Never the in-sample prediction: it saw this run.
                (Ok(_), _, _) => Err("no serving layer was fitted without this run".to_string()),
                (Err(e), _, _) => Err(e.clone()),
            };
            Outcome {
                run: o.run,
                predicted,
                moe: o.moe,
            }
        })
        .collect()
}

/// Every engine's serving layers fitted from the defaults to the answered
/// runs that `members` keeps.
fn layers(
    runs: &[Run],
    outcomes: &[Outcome],
    samples: &[Option<Sample>],
    members: impl Fn(&Run) -> bool + Sync,
) -> Vec<(Engine, Layers)> {
    let fitted = |keep: &(dyn Fn(&Run) -> bool + Sync), weighting| {
        fit_engines(
            runs,
            outcomes,
            samples,
            |r| members(r) && keep(r),
            weighting,
        )
    };
    let fixed = fitted(
        &|r| is_aggregated(r) && r.client == Client::Fixed,
        Weighting::PerRun,
    );
    let imax = fitted(
        &|r| is_aggregated(r) && r.client == Client::InferenceMax,
        Weighting::PerRun,
    );
    // One model is most of the disaggregated runs (DeepSeek-R1, 79% of
    // train.csv's): fitted run by run, the layer is that model's. When this
    // was chosen (b60bed8), every disaggregated run, each predicted by a
    // layer fitted without its model's runs, was 56% / 41% off (TTFT / TPOT
    // median) that way, and 54% / 35% with each model's runs weighing the
    // square root of their number (docs/accuracy.md has today's figures).
    // The aggregated layers' models are more even, and weighing them so
    // made the left-out H100/H200 MoE models' TTFT worse (21% to 23%).
    let dis = fitted(&|r| !is_aggregated(r), Weighting::SqrtPerModel);
    fixed
        .into_iter()
        .zip(imax)
        .zip(dis)
        .map(
            |(((engine, fixed), (_, inferencemax)), (_, disaggregated))| {
                (
                    engine,
                    Layers {
                        fixed,
                        inferencemax,
                        disaggregated,
                    },
                )
            },
        )
        .collect()
}

/// Leave-one-model-out cross-validation: for each model, every engine's
/// serving layers (aggregated and disaggregated) are fitted from the
/// defaults without that model's runs, then predict them. Runs that are not answered stay
/// unanswered.
pub fn cross_validate(
    runs: &[Run],
    outcomes: &[Outcome],
    samples: &[Option<Sample>],
) -> Vec<Outcome> {
    let mut models: Vec<&str> = runs.iter().map(|r| r.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let fits: Vec<(&str, Vec<(Engine, Layers)>)> = models
        .iter()
        .map(|m| (*m, layers(runs, outcomes, samples, |r| r.model != *m)))
        .collect();
    outcomes
        .iter()
        .map(|o| {
            let run = &runs[o.run];
            let predicted = match (&o.predicted, &samples[o.run]) {
                (Ok(_), Some(s)) => {
                    let (_, per_engine) =
                        fits.iter().find(|(m, _)| *m == run.model).expect("listed");
                    let (_, l) = per_engine
                        .iter()
                        .find(|(e, _)| *e == run.engine)
                        .expect("measured engine");
                    let (ttft, tpot) = s.predict(&l.of(run).params);
                    Ok(Predicted { ttft, tpot })
                }
                (p, _) => p.clone(),
            };
            Outcome {
                run: o.run,
                predicted,
                moe: o.moe,
            }
        })
        .collect()
}

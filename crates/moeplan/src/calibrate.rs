//! `moeplan calibrate`: the serving layer of a user's own stack, fitted to
//! their benchmark runs.
//!
//! Runs are grouped by stack (GPU × engine) and mode (aggregated,
//! disaggregated). Each group starts from the built-in serving layer of its
//! engine (`profile::serving_params`) and lets move only what its number of
//! runs can pin down (`fit::identifiable`: the two kernel scales from one
//! run, the fixed costs from three, everything from ten, the slots a
//! benchmark held above the engine's batch only where some runs differ in
//! their output length alone, the sequence overhead only from runs at more
//! than one load, the arrival wait per running request only from
//! aggregated runs of a mixed scheduler at more than one load), with a prior
//! centred on the values it starts from, built in or `--base`'s
//! (`fit::Anchor`: on the kernel scales and step overhead; for a
//! disaggregated group on the loop's shape too, whose TTFT the runs'
//! unstated worker counts decide): a fit of a few runs generalises to
//! layouts, lengths and concurrencies it has not seen instead of memorising
//! them. Runs that contradict the physics (a TPOT under the time to read the
//! bytes a decode step must read, a TTFT under the time the prompt's FLOP
//! take at the dense peak) are left out, each with why. Runs it cannot
//! estimate at all (unknown model, invalid layout) never reach a fit from
//! the CLI: `runs::read_usable` refuses their file, each located.

use crate::accuracy::ErrorStats;
use crate::calibration::ServingParams;
use crate::engine::Engine;
use crate::fit::{self, Anchor, Sample};
use crate::profile::{
    self, ModelStack, MovedParam, ServingMode as Mode, StackKey, UserFit, UserProfile, UserStack,
};
use crate::runs::{Run, RunDeployment};
use crate::serving::{estimate_summary, Client};
use crate::units::{Bytes, Seconds};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// A run left out of the fit.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    /// Its index in the input.
    pub run: usize,
    /// Why, with the figures.
    pub why: String,
}

/// What the physics says of a run as deployed: the least TTFT and TPOT it
/// allows (its prompt's FLOP at the dense peak of the GPUs that prefill it;
/// the bytes one decode step must read at the full HBM bandwidth), and the
/// pool, if any, whose GPUs cannot hold one request beside the weights.
struct Physics {
    ttft_floor: Seconds,
    tpot_floor: Seconds,
    /// A pool (prefill or decode; the replica when aggregated) that moeplan's
    /// memory model says cannot run: (weights, usable memory) per GPU.
    no_room: Option<(Bytes, Bytes)>,
}

/// The least TTFT and TPOT the physics allows a run (`Physics`). None where
/// the run cannot be estimated.
pub fn floors(run: &Run) -> Option<(Seconds, Seconds)> {
    physics(run).map(|p| (p.ttft_floor, p.tpot_floor))
}

fn physics(run: &Run) -> Option<Physics> {
    let (prefill, decode, per_decode) = match run.deployment {
        RunDeployment::Aggregated {
            layout,
            concurrency,
            ..
        } => (layout, layout, concurrency),
        RunDeployment::Disaggregated {
            prefill,
            decode,
            concurrency,
        } => (
            prefill.layout,
            decode.layout,
            concurrency.div_ceil(decode.workers.unwrap_or(1).max(1) as u64),
        ),
    };
    let p = estimate_summary(&run.replica_of(prefill, 1).ok()?.input()).ok()?;
    let d_replica = run.replica_of(decode, per_decode).ok()?;
    let d = estimate_summary(&d_replica.input()).ok()?;
    let ttft_floor = Seconds(
        run.isl as f64
            / (p.ceilings.prefill_tokens_per_s_per_gpu.0 * p.layout.gpus() as f64).max(1e-12),
    );
    let tpot_floor = d.ceilings.decode_bytes_per_step_per_gpu / d_replica.gpu.memory_bandwidth;
    let no_room = [&p, &d]
        .into_iter()
        .find(|e| e.max_concurrency == 0)
        .map(|e| (e.memory.weights_bytes, e.memory.usable_bytes));
    Some(Physics {
        ttft_floor,
        tpot_floor,
        no_room,
    })
}

/// Why a run contradicts the physics or itself (None: it does not): a
/// stated throughput its own concurrency and latencies cannot give
/// (`littles_law`, which needs no estimate), then the floors. A measurement
/// may sit a little under a floor computed from datasheet figures; 10% under
/// is a contradiction. A layout moeplan's memory model cannot run (not one
/// request fits beside the weights) ran all the same: moeplan misreads that
/// run (its checkpoint or layout), so fitting to it would teach the serving
/// layer its own error.
fn suspicion(run: &Run) -> Option<String> {
    if let Some(why) = littles_law(run) {
        return Some(why);
    }
    let Physics {
        ttft_floor,
        tpot_floor,
        no_room,
    } = physics(run)?;
    let under = |measured: Seconds, floor: Seconds| measured.0 < 0.9 * floor.0;
    if let Some((weights, usable)) = no_room {
        return Some(format!(
            "{}:{}: moeplan finds no room for one request on this layout ({weights} of weights per GPU, {usable} usable), yet it ran: the row or moeplan's reading of its model is wrong",
            run.file, run.line
        ));
    }
    if under(run.tpot, tpot_floor) {
        return Some(format!(
            "{}:{}: TPOT {} is under the {} a decode step needs to read its bytes at full HBM bandwidth; only speculative decoding (MTP, EAGLE: several tokens per step, which moeplan does not model) or a wrong row explains it",
            run.file, run.line, run.tpot, tpot_floor
        ));
    }
    if under(run.ttft, ttft_floor) {
        return Some(format!(
            "{}:{}: TTFT {} is under the {} its {}-token prompt needs at the dense peak",
            run.file, run.line, run.ttft, ttft_floor, run.isl
        ));
    }
    None
}

/// How far above what its concurrency and latencies give by Little's law a
/// run's stated throughput may be before it is suspect: more output than the
/// requests in flight can produce (the run's ramp and drain only lower the
/// measured rate).
const THROUGHPUT_ABOVE: f64 = 1.25;

/// How far below: the client kept far fewer requests in flight than the row
/// says, or the run was one short wave of requests (the ramp and drain of a
/// run of 8-10 prompts per request in flight cost under a quarter).
const THROUGHPUT_BELOW: f64 = 0.5;

/// Why a run's stated throughput contradicts its own concurrency and
/// latencies (None: it does not, or it states none).
fn littles_law(run: &Run) -> Option<String> {
    let stated = run.throughput?;
    let law = run.closed_loop_throughput(run.ttft, run.tpot);
    let ratio = stated.0 / law.0;
    let why = if ratio > THROUGHPUT_ABOVE {
        "more output than its requests in flight can produce at its latencies"
    } else if ratio < THROUGHPUT_BELOW {
        "the client kept far fewer requests in flight than its concurrency says, the run was too short to reach them (one wave of requests), or the throughput is of another deployment (an aggregated row's is one replica's)"
    } else {
        return None;
    };
    Some(format!(
        "{}:{}: throughput {stated} is {} the {law} that {} requests in flight give at TTFT {} and TPOT {} (Little's law): {why}",
        run.file,
        run.line,
        if ratio > 1.0 { "above" } else { "below" },
        run.deployment.concurrency(),
        run.ttft,
        run.tpot
    ))
}

/// Every run that contradicts the physics.
pub fn suspects(runs: &[Run]) -> Vec<Suspect> {
    runs.par_iter()
        .enumerate()
        .filter_map(|(i, r)| suspicion(r).map(|why| Suspect { run: i, why }))
        .collect()
}

/// A user's stack and mode: GPU, engine, aggregated or disaggregated.
type Group = (String, Engine, Mode);

/// Runs grouped by (stack, engine, mode), each with its configuration.
type Configured<'a> = BTreeMap<(String, Engine, Mode, Client), Vec<(String, &'a Sample)>>;

/// The built-in serving layer a fit of `engine`'s runs in `mode`, measured
/// by `client`, starts from.
fn built_in(engine: Engine, mode: Mode, client: Client) -> ServingParams {
    match mode {
        Mode::Aggregated => profile::serving_params(engine, client),
        Mode::Disaggregated => profile::disaggregated_serving_params(engine)
            .unwrap_or_else(|| profile::serving_params(engine, Client::Fixed)),
    }
}

/// |error| statistics of TTFT and TPOT of `samples` under `sv`.
fn errors(samples: &[&Sample], sv: &ServingParams) -> (ErrorStats, ErrorStats) {
    let (t, p): (Vec<f64>, Vec<f64>) = samples
        .iter()
        .map(|s| {
            let (ttft, tpot) = s.predict(sv);
            (ttft / s.ttft - 1.0, tpot / s.tpot - 1.0)
        })
        .unzip();
    (ErrorStats::of(&t), ErrorStats::of(&p))
}

/// How a group's fit is held to where it starts: an aggregated group's
/// runs pin the loop's shape themselves, a disaggregated group's TTFT hangs
/// on worker counts its runs seldom state (`fit::Anchor`).
fn anchor(mode: Mode) -> Anchor {
    match mode {
        Mode::Aggregated => Anchor::Kernels,
        Mode::Disaggregated => Anchor::Loop,
    }
}

/// Fits one group of runs in `mode` from `start`.
pub(crate) fn fit_group(samples: &[&Sample], start: &ServingParams, mode: Mode) -> UserFit {
    let free = fit::identifiable(samples, mode);
    let params = fit::fit_free(samples, start, &free, anchor(mode));
    let (t0, p0) = errors(samples, start);
    let (t1, p1) = errors(samples, &params);
    UserFit {
        runs: samples.len(),
        params,
        moved: free
            .iter()
            .map(|p| MovedParam {
                name: p.name().to_string(),
                before: p.value(start),
                after: p.value(&params),
                determined_by: p.determined_by().to_string(),
            })
            .collect(),
        ttft_median_before: t0.median,
        ttft_median_after: t1.median,
        tpot_median_before: p0.median,
        tpot_median_after: p1.median,
        ttft_p90_before: t0.p90,
        ttft_p90_after: t1.p90,
        tpot_p90_before: p0.p90,
        tpot_p90_after: p1.p90,
        models: Vec::new(),
    }
}

/// The runs of each stack and mode that are fitted: answered, not suspect.
/// Each group's client is its first run's (a stack's runs come from one
/// client), with its runs' samples and their model stacks' keys.
fn groups<'a>(
    runs: &'a [Run],
    samples: &'a [Option<Sample>],
    suspect: &[Suspect],
) -> BTreeMap<Group, Fitted<'a>> {
    let mut g: BTreeMap<Group, Fitted> = BTreeMap::new();
    for (i, (r, s)) in runs.iter().zip(samples).enumerate() {
        let Some(s) = s else { continue };
        if suspect.iter().any(|x| x.run == i) {
            continue;
        }
        let f = g
            .entry((r.gpu.clone(), r.engine, r.deployment.mode()))
            .or_insert_with(|| Fitted {
                client: r.client,
                samples: Vec::new(),
                keys: Vec::new(),
            });
        f.samples.push(s);
        f.keys.push(stack_key(r));
    }
    g
}

/// One group's fitted runs.
struct Fitted<'a> {
    client: Client,
    samples: Vec<&'a Sample>,
    /// Each run's model stack (None where its model is not in the catalog).
    keys: Vec<Option<StackKey>>,
}

impl Fitted<'_> {
    /// The built-in stack (`profiles/stacks.toml`) that serves every run
    /// today, when they are one model's on one stack: the layer their
    /// estimates use now, where a calibration of them starts, so that its
    /// "before" is what moeplan predicts for them.
    fn own_stack(&self) -> Option<&'static ModelStack> {
        let first = self.keys.first()?.as_ref()?;
        self.keys
            .iter()
            .all(|k| k.as_ref() == Some(first))
            .then(|| profile::model_stack(first))
            .flatten()
    }

    /// Its runs' models, by the names the built-in stacks match.
    fn models(&self) -> Vec<String> {
        let m: BTreeSet<&String> = self.keys.iter().flatten().map(|k| &k.model).collect();
        m.into_iter().cloned().collect()
    }
}

/// Where a group's fit starts: the stack's layer in `base` (an earlier
/// profile, to recalibrate), else the built-in one.
fn start(
    base: Option<&UserProfile>,
    (gpu, engine, mode): &(String, Engine, Mode),
    client: Client,
    own: Option<&ModelStack>,
) -> ServingParams {
    let stack = base.and_then(|b| {
        b.stack
            .iter()
            .find(|s| s.gpu == *gpu && s.engine == *engine)
    });
    let fit = stack.and_then(|s| match mode {
        Mode::Aggregated => s.aggregated.as_ref(),
        Mode::Disaggregated => s.disaggregated.as_ref(),
    });
    match (fit, own) {
        (Some(f), _) => f.params,
        (None, Some(m)) => m.fit.params,
        (None, None) => built_in(*engine, *mode, client),
    }
}

/// moeplan's built-in serving layer fitted to `runs` (`calibrate
/// --built-in`): each engine's, over every GPU (aggregated and
/// disaggregated apart), from the kernel tables' defaults, as the text of
/// `profiles/serving.toml`; `names` names the runs files in it. Unlike a
/// user's stacks it is fitted to every answered run, suspect ones too: it
/// is what `moeplan accuracy` measures itself against. On train.csv this is
/// the embedded file (`tests/library/calibrate.rs` checks it).
pub fn built_in_serving(runs: &[Run], names: &str) -> String {
    let outcomes = crate::accuracy::evaluate(runs);
    let samples = crate::accuracy::samples(runs);
    let table = crate::accuracy::serving_table(runs, &outcomes, &samples, names);
    profile::serving_file(&table)
}

/// Runs a model's stack needs before the built-in stacks hold a layer of
/// its own: below it the engine's layer serves the model. Five runs free
/// four parameters (`fit::identifiable`), the fewest that fit a layer
/// rather than the runs.
const MIN_STACK_RUNS: usize = 5;

/// The median |error| of TPOT a built-in stack's fit may leave on its own
/// runs when it puts the kernels' time `STACK_KERNEL_RATIO` times off the
/// kernel tables. Such a fit does not describe its runs: they measured
/// something the model does not represent (speculative decoding they do
/// not state, a harness's own timing: on train.csv, DeepSeek-R1-NVFP4 on
/// B200 at 85-92 ms per token whatever the layout and load, where the
/// engine's layer gives 11-33 ms; its fit put decode kernels at 5.1× their
/// measured time and still missed by 63%), and the layer it bends would
/// serve every other estimate of the model.
const MAX_STACK_TPOT_ERROR: f64 = 0.5;

/// How far from the kernel tables (a ratio either way) a built-in stack
/// may put its kernel time and still be kept when it misses its runs
/// (`MAX_STACK_TPOT_ERROR`); the engines' layers are fitted at 0.5-1.3.
const STACK_KERNEL_RATIO: f64 = 2.0;

/// Whether a stack's fit describes its runs well enough to serve its model:
/// not both off its runs' TPOT by more than `MAX_STACK_TPOT_ERROR` and its
/// kernel time more than `STACK_KERNEL_RATIO` times off the tables.
pub fn describes_its_runs(fit: &UserFit) -> bool {
    let off = |r: f64| !(1.0 / STACK_KERNEL_RATIO..=STACK_KERNEL_RATIO).contains(&r);
    let bent = off(fit.params.prefill_scale) || off(fit.params.decode_scale);
    !(bent && fit.tpot_median_after > MAX_STACK_TPOT_ERROR)
}

/// The built-in stacks fitted to `runs` (`calibrate --built-in-stacks`):
/// each model's runs in one precision of its weights (`profile::stack_weights`)
/// on one GPU × engine × mode (× client, aggregated)
/// fitted as `calibrate` fits a user's stack, from the engine's built-in
/// layer, suspect runs left out; a stack of fewer than `MIN_STACK_RUNS`
/// runs, whose fit moved nothing or does not describe its runs
/// (`describes_its_runs`), gets none. `names` names the runs files. On train.csv this is
/// `profiles/stacks.toml` (`tests/library/calibrate.rs` checks it).
pub fn built_in_stacks(runs: &[Run], names: &str) -> String {
    let samples = crate::accuracy::samples(runs);
    let table = profile::StackTable {
        source: format!(
            "fitted by `moeplan calibrate --built-in-stacks` to {names}: each model's runs on one GPU × engine × mode (× benchmark client, aggregated) in one precision of its weights, of at least {MIN_STACK_RUNS} runs, as `moeplan calibrate` fits a user's stack, from the engine's built-in serving layer, suspect runs left out, and so is a fit that misses its runs' median TPOT by more than {:.0}% with kernel times more than {STACK_KERNEL_RATIO}× off the kernel tables", MAX_STACK_TPOT_ERROR * 100.0
        ),
        stack: fit_stacks(runs, &samples, |_| true, |k| built_in(k.engine, k.mode, k.client)),
    };
    format!(
        "# Generated by `moeplan calibrate --built-in-stacks` (tools/accuracy.sh); do not edit.\n\n{}",
        toml::to_string(&table).expect("the stacks serialise")
    )
}

/// `run`'s stack (None where its model or GPU is not in the catalog).
pub(crate) fn stack_key(run: &Run) -> Option<StackKey> {
    let gpu = crate::catalog::gpu(&run.gpu).and_then(Result::ok)?;
    let model = run.model().ok()?;
    Some(StackKey::new(
        &model,
        &gpu,
        run.engine,
        run.deployment.mode(),
        run.client,
    ))
}

/// The model stacks of the runs `members` keeps (answered, not suspect):
/// each stack of at least `MIN_STACK_RUNS` runs fitted as a user's stack
/// from `start` of its key; a fit that moved nothing is left out (it is
/// the starting layer again), and so is one that does not describe its
/// runs (`describes_its_runs`).
pub(crate) fn fit_stacks(
    runs: &[Run],
    samples: &[Option<Sample>],
    members: impl Fn(&Run) -> bool,
    start: impl Fn(&StackKey) -> ServingParams + Sync,
) -> Vec<profile::ModelStack> {
    let suspect = suspects(runs);
    let mut g: BTreeMap<StackKey, (BTreeSet<String>, Vec<&Sample>)> = BTreeMap::new();
    for (i, (r, s)) in runs.iter().zip(samples).enumerate() {
        if !members(r) || suspect.iter().any(|x| x.run == i) {
            continue;
        }
        let (Some(s), Some(key)) = (s, stack_key(r)) else {
            continue;
        };
        let e = g.entry(key).or_default();
        e.0.insert(r.engine_version.clone());
        e.1.push(s);
    }
    g.into_par_iter()
        .filter(|(_, (_, v))| v.len() >= MIN_STACK_RUNS)
        .filter_map(|(k, (versions, v))| {
            let start = start(&k);
            let fit = fit_group(&v, &start, k.mode);
            let keep = fit.params != start && describes_its_runs(&fit);
            keep.then_some(profile::ModelStack {
                fit,
                model: k.model,
                weights: k.weights,
                gpu: k.gpu,
                engine: k.engine,
                mode: k.mode,
                client: k.client,
                versions: versions.into_iter().collect(),
            })
        })
        .collect()
}

/// Fits every stack of `runs`; `source` names them in the profile.
pub fn calibrate(runs: &[Run], source: &str) -> UserProfile {
    recalibrate(runs, source, None)
}

/// `calibrate` starting, for the stacks it has, from `base` (a profile an
/// earlier calibration wrote) instead of the built-in serving layer.
pub fn recalibrate(runs: &[Run], source: &str, base: Option<&UserProfile>) -> UserProfile {
    let samples = crate::accuracy::samples(runs);
    let suspect = suspects(runs);
    let groups = groups(runs, &samples, &suspect);
    let fits: Vec<(Group, UserFit, Option<&ModelStack>)> = groups
        .par_iter()
        .map(|(k, g)| {
            let own = g.own_stack();
            let fit = UserFit {
                models: g.models(),
                ..fit_group(&g.samples, &start(base, k, g.client, own), k.2)
            };
            (k.clone(), fit, own)
        })
        .collect();
    let mut stacks: Vec<UserStack> = Vec::new();
    for ((gpu, engine, m), f, own) in fits {
        if !stacks.iter().any(|s| s.gpu == gpu && s.engine == engine) {
            let earlier =
                base.filter(|b| b.stack.iter().any(|s| s.gpu == gpu && s.engine == engine));
            stacks.push(UserStack {
                base: match (earlier, own) {
                    (Some(b), _) => format!("the earlier profile of {}", b.source),
                    (None, Some(o)) => format!(
                        "{}, with the built-in stack of {} ({} runs, profiles/stacks.toml)",
                        base_of(&gpu, engine),
                        o.model,
                        o.fit.runs
                    ),
                    (None, None) => base_of(&gpu, engine),
                },
                gpu: gpu.clone(),
                engine,
                aggregated: None,
                disaggregated: None,
            });
        }
        let s = stacks.last_mut().expect("pushed");
        match m {
            Mode::Aggregated => s.aggregated = Some(f),
            Mode::Disaggregated => s.disaggregated = Some(f),
        }
    }
    carry_over(&mut stacks, base);
    UserProfile {
        source: source.to_string(),
        suspect: suspect.into_iter().map(|s| s.why).collect(),
        stack: stacks,
    }
}

/// What `base` has that the new runs did not refit, kept as it was: its
/// other stacks, and a refitted stack's other mode; a fit refitted from
/// the earlier one serves the earlier one's models too.
fn carry_over(stacks: &mut Vec<UserStack>, base: Option<&UserProfile>) {
    for b in base.map_or(&[][..], |b| &b.stack[..]) {
        match stacks
            .iter_mut()
            .find(|s| s.gpu == b.gpu && s.engine == b.engine)
        {
            Some(s) => {
                for (new, old) in [
                    (&mut s.aggregated, &b.aggregated),
                    (&mut s.disaggregated, &b.disaggregated),
                ] {
                    match (new.as_mut(), old) {
                        (None, _) => new.clone_from(old),
                        // Refitted from the earlier fit: it serves its models
                        // too (all of them where it did not record them).
                        (Some(n), Some(o)) if o.models.is_empty() => n.models.clear(),
                        (Some(n), Some(o)) => {
                            let both: BTreeSet<&String> =
                                n.models.iter().chain(&o.models).collect();
                            n.models = both.into_iter().cloned().collect();
                        }
                        (Some(_), None) => {}
                    }
                }
            }
            None => stacks.push(b.clone()),
        }
    }
}

/// The built-in profile a stack's kernels come from.
fn base_of(gpu: &str, engine: Engine) -> String {
    match crate::catalog::gpu(gpu) {
        Some(Ok(g)) => {
            let p = profile::resolve(&g, engine);
            format!("{} (built in)", p.id)
        }
        _ => format!("{gpu}-{} (GPU not in the catalog)", engine.name()),
    }
}

/// The profile as the file `moeplan calibrate --out` writes.
pub fn to_toml(p: &UserProfile) -> String {
    let body = toml::to_string(p).expect("a user profile serialises");
    format!(
        "# A moeplan profile: each stack's serving layer fitted to measured runs by\n\
         # `moeplan calibrate`. Use it with `--profile FILE` (or MOEPLAN_PROFILE).\n\n{body}"
    )
}

/// Reads a profile file's text.
pub fn from_toml(text: &str) -> Result<UserProfile, String> {
    let mut p: UserProfile = toml::from_str(text).map_err(|e| e.to_string())?;
    for s in &mut p.stack {
        // A stack is matched by the catalog id of the GPU an estimate runs
        // on: an alias is read as its id, and a GPU the catalog does not
        // know would match nothing (the profile silently unused).
        match crate::catalog::gpu(&s.gpu) {
            Some(Ok(g)) => s.gpu = g.id,
            _ => {
                return Err(format!(
                    "stack {} {}: unknown GPU `{}` (`moeplan catalog` lists the GPUs)",
                    s.gpu,
                    s.engine.name(),
                    s.gpu
                ))
            }
        }
    }
    for (i, s) in p.stack.iter().enumerate() {
        if p.stack[..i]
            .iter()
            .any(|t| t.gpu == s.gpu && t.engine == s.engine)
        {
            return Err(format!(
                "stack {} {} appears twice: a profile holds one layer per GPU × engine (merge them by calibrating their runs together, or --base the earlier)",
                s.gpu,
                s.engine.name()
            ));
        }
        let fits = [
            ("aggregated", &s.aggregated),
            ("disaggregated", &s.disaggregated),
        ];
        for (mode, fit) in fits {
            if let Some(f) = fit {
                f.params.check().map_err(|m| {
                    format!("stack {} {} {mode}: params.{m}", s.gpu, s.engine.name())
                })?;
            }
        }
    }
    Ok(p)
}

/// How a calibration of one stack generalises: fitted on half of its
/// layouts and lengths, the error on the other half.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Validation {
    /// `<gpu> <engine> <mode>`.
    pub stack: String,
    /// Runs fitted.
    pub fitted: usize,
    /// Runs predicted (none of their layout-and-lengths was fitted).
    pub predicted: usize,
    /// Median |error| of TTFT on the predicted runs with the built-in serving layer.
    pub ttft_before: f64,
    /// The same with the calibrated one.
    pub ttft_after: f64,
    /// TPOT, built in.
    pub tpot_before: f64,
    /// TPOT, calibrated.
    pub tpot_after: f64,
    /// 90th percentile |error| of TTFT on the predicted runs, built in.
    pub ttft_p90_before: f64,
    /// The same, calibrated.
    pub ttft_p90_after: f64,
    /// TPOT, built in.
    pub tpot_p90_before: f64,
    /// TPOT, calibrated.
    pub tpot_p90_after: f64,
}

impl Validation {
    /// A stack's row from the |error|s of its predicted runs, each
    /// `[ttft built in, ttft calibrated, tpot built in, tpot calibrated]`.
    fn of(stack: String, fitted: usize, errors: &[[f64; 4]]) -> Validation {
        let q = |i: usize, q: f64| {
            crate::accuracy::quantile(&errors.iter().map(|e| e[i]).collect::<Vec<_>>(), q)
        };
        Validation {
            stack,
            fitted,
            predicted: errors.len(),
            ttft_before: q(0, 0.5),
            ttft_after: q(1, 0.5),
            tpot_before: q(2, 0.5),
            tpot_after: q(3, 0.5),
            ttft_p90_before: q(0, 0.9),
            ttft_p90_after: q(1, 0.9),
            tpot_p90_before: q(2, 0.9),
            tpot_p90_after: q(3, 0.9),
        }
    }
}

/// The configuration a run tried besides its concurrency: its layout(s) and lengths.
fn configuration(r: &Run) -> String {
    let layouts = match r.deployment {
        RunDeployment::Aggregated { layout, .. } => layout.to_string(),
        RunDeployment::Disaggregated {
            prefill, decode, ..
        } => format!("{} / {}", prefill.layout, decode.layout),
    };
    format!("{layouts} {}x{}", r.isl, r.osl)
}

/// Splits each stack's runs by configuration (every other one, in sorted
/// order), calibrates on one half and predicts the other; the last rows
/// pool the predicted runs of every aggregated stack and every
/// disaggregated one (when there are both), then of every stack.
pub fn validate(runs: &[Run]) -> Vec<Validation> {
    let samples = crate::accuracy::samples(runs);
    let suspect = suspects(runs);
    // A stack as a user has one: a model on a GPU with an engine version.
    let mut by: Configured = BTreeMap::new();
    for (i, (r, s)) in runs.iter().zip(&samples).enumerate() {
        let Some(s) = s else { continue };
        if suspect.iter().any(|x| x.run == i) {
            continue;
        }
        let stack = format!("{} {} {}", r.model, r.gpu, r.engine_version);
        by.entry((stack, r.engine, r.deployment.mode(), r.client))
            .or_default()
            .push((configuration(r), s));
    }
    let rows: Vec<(Mode, Validation, Vec<[f64; 4]>)> = by
        .par_iter()
        .filter_map(|(k, v)| split_and_fit(k, v).map(|(val, e)| (k.2, val, e)))
        .collect();
    let pooled = |label: &str, keep: &dyn Fn(Mode) -> bool| {
        let kept = rows.iter().filter(|(m, _, _)| keep(*m));
        let fitted = kept.clone().map(|(_, v, _)| v.fitted).sum();
        let errors: Vec<[f64; 4]> = kept.flat_map(|(_, _, e)| e.clone()).collect();
        (!errors.is_empty()).then(|| Validation::of(label.into(), fitted, &errors))
    };
    // Each mode's pool where both are present (else it is "every stack").
    let both = [Mode::Aggregated, Mode::Disaggregated]
        .iter()
        .all(|m| rows.iter().any(|(k, _, _)| k == m));
    let mut totals = Vec::new();
    if both {
        totals.push(pooled("every aggregated stack", &|m| m == Mode::Aggregated));
        totals.push(pooled("every disaggregated stack", &|m| {
            m == Mode::Disaggregated
        }));
    }
    totals.push(pooled("every stack", &|_| true));
    let mut out: Vec<Validation> = rows.into_iter().map(|(_, v, _)| v).collect();
    out.extend(totals.into_iter().flatten());
    out
}

/// One stack's split: None when it has fewer than two configurations.
fn split_and_fit(
    k: &(String, Engine, Mode, Client),
    v: &[(String, &Sample)],
) -> Option<(Validation, Vec<[f64; 4]>)> {
    let mut configs: Vec<&str> = v.iter().map(|(c, _)| c.as_str()).collect();
    configs.sort_unstable();
    configs.dedup();
    if configs.len() < 2 {
        return None;
    }
    let fit_half = |c: &str| {
        configs
            .binary_search(&c)
            .map(|i| i % 2 == 0)
            .unwrap_or(false)
    };
    let train: Vec<&Sample> = v
        .iter()
        .filter(|(c, _)| fit_half(c))
        .map(|(_, s)| *s)
        .collect();
    let test: Vec<&Sample> = v
        .iter()
        .filter(|(c, _)| !fit_half(c))
        .map(|(_, s)| *s)
        .collect();
    let start = built_in(k.1, k.2, k.3);
    let fitted = fit_group(&train, &start, k.2).params;
    let abs = |s: &Sample, sv: &ServingParams| {
        let (t, p) = s.predict(sv);
        ((t / s.ttft - 1.0).abs(), (p / s.tpot - 1.0).abs())
    };
    let errors: Vec<[f64; 4]> = test
        .iter()
        .map(|s| {
            let (t0, p0) = abs(s, &start);
            let (t1, p1) = abs(s, &fitted);
            [t0, t1, p0, p1]
        })
        .collect();
    let mode = k.2.name();
    let client = match k.3 {
        Client::Fixed => String::new(),
        c => format!(" ({})", c.name()),
    };
    let stack = format!("{} {} {mode}{client}", k.0, k.1.name());
    Some((Validation::of(stack, train.len(), &errors), errors))
}

/// One run under the serving layer a calibration starts from and the one
/// it fits (`moeplan calibrate --explain`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct RunFit {
    /// `file:line`.
    pub run: String,
    /// Measured TTFT and TPOT.
    pub measured: (Seconds, Seconds),
    /// Predicted before.
    pub before: (Seconds, Seconds),
    /// Predicted after.
    pub after: (Seconds, Seconds),
    /// Left out as contradicting the physics.
    pub suspect: bool,
}

/// Every run of `runs` under the starting and the fitted serving layers of
/// `profile` (runs that cannot be estimated are left out).
pub fn explain(runs: &[Run], profile: &UserProfile, base: Option<&UserProfile>) -> Vec<RunFit> {
    let samples = crate::accuracy::samples(runs);
    let suspect = suspects(runs);
    runs.iter()
        .zip(&samples)
        .enumerate()
        .filter_map(|(i, (r, s))| {
            let s = s.as_ref()?;
            let key = (r.gpu.clone(), r.engine, r.deployment.mode());
            let fitted = start(Some(profile), &key, r.client, None);
            // What moeplan predicted for it: the earlier profile's layer,
            // else its model's built-in stack, else the engine's.
            let own = stack_key(r).and_then(|k| profile::model_stack(&k));
            Some(RunFit {
                run: format!("{}:{}", r.file, r.line),
                measured: (r.ttft, r.tpot),
                before: s.predict(&start(base, &key, r.client, own)),
                after: s.predict(&fitted),
                suspect: suspect.iter().any(|x| x.run == i),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_disaggregated_fit_is_held_to_its_loop_shape() {
        assert_eq!(anchor(Mode::Aggregated), Anchor::Kernels);
        assert_eq!(anchor(Mode::Disaggregated), Anchor::Loop);
    }
}

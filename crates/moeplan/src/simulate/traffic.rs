//! The traffic a simulation drives: open-loop arrivals (Poisson, or gamma
//! for bursty traffic with a given CV), a closed loop of clients (what
//! benchmarks run), or a trace; prompt and output lengths drawn from a
//! distribution. Traces are read in three published formats, each line
//! checked (located diagnostics, arrivals in order, no negative times).

use super::random::Rng;
use crate::spec::source::{read_text, Limit};
use crate::spec::{Problem, SpecError};
use std::path::Path;

/// Trace files: a week of Azure's production traffic is a few hundred MB.
const TRACE_FILE: Limit = Limit {
    max_bytes: 1024 * 1024 * 1024,
    what: "traces",
    hint: "split the trace, or pass a window of it",
};

/// Length histograms (`tokens,weight`): one line per length is a few MB.
const HISTOGRAM_FILE: Limit = Limit {
    max_bytes: 16 * 1024 * 1024,
    what: "length histograms",
    hint: "a histogram has a line per length bucket",
};

/// The longest prompt or output a request may have: ten million tokens,
/// far beyond any model's context, so every sum of lengths stays exact.
pub(crate) const MAX_TOKENS: u64 = 10_000_000;

/// The random process of open-loop arrivals at a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// Exponential gaps.
    Poisson,
    /// Gamma gaps of a given coefficient of variation (above 1 bursty).
    Gamma,
}

impl Process {
    /// Every process.
    pub const ALL: [Process; 2] = [Process::Poisson, Process::Gamma];

    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Process::Poisson => "poisson",
            Process::Gamma => "gamma",
        }
    }

    /// Arrivals of this process at `rate` requests per second, gamma gaps
    /// with coefficient of variation `cv`.
    pub fn at(self, rate: f64, cv: f64) -> Arrivals {
        match self {
            Process::Poisson => Arrivals::Poisson { rate },
            Process::Gamma => Arrivals::Gamma { rate, cv },
        }
    }
}

/// How requests arrive.
#[derive(Clone, Debug, PartialEq)]
pub enum Arrivals {
    /// Poisson arrivals at `rate` requests per second.
    Poisson {
        /// Requests per second.
        rate: f64,
    },
    /// Gamma inter-arrival times at `rate` with coefficient of variation `cv`
    /// (1 is Poisson; above 1 bursty).
    Gamma {
        /// Requests per second.
        rate: f64,
        /// Coefficient of variation of the gaps.
        cv: f64,
    },
    /// `clients` clients, each sending its next request when the last one finishes.
    Closed {
        /// Requests kept in flight.
        clients: u64,
    },
    /// The requests of a trace, at their times and lengths.
    Trace(Vec<TraceRequest>),
}

/// A distribution of token lengths.
#[derive(Clone, Debug, PartialEq)]
pub enum Lengths {
    /// Always this many.
    Fixed(u64),
    /// Uniform between the two (inclusive).
    Uniform(u64, u64),
    /// Lognormal with this mean and coefficient of variation.
    Lognormal {
        /// Mean tokens.
        mean: f64,
        /// Coefficient of variation.
        cv: f64,
    },
    /// An empirical histogram: (tokens, weight) pairs.
    Empirical(Vec<(u64, f64)>),
}

impl Lengths {
    /// The lengths `client` draws for a stated length of `tokens`: all of
    /// them, or uniformly from `Client::shortest` up to `tokens`.
    pub fn drawn_by(client: crate::serving::Client, tokens: u64) -> Lengths {
        match client.shortest(tokens) {
            shortest if shortest == tokens => Lengths::Fixed(tokens),
            shortest => Lengths::Uniform(shortest, tokens),
        }
    }

    /// A distribution around `mean` as the command line writes it: `fixed`,
    /// `uniform:MIN-MAX`, `lognormal:CV`, or a CSV histogram file of
    /// `tokens,weight` lines.
    pub fn parse(spec: &str, mean: u64) -> Result<Lengths, String> {
        let number = |s: &str| {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        match spec.split_once(':') {
            None if spec == "fixed" => Ok(Lengths::Fixed(mean.max(1))),
            Some(("uniform", range)) => {
                let (a, b) = range
                    .split_once('-')
                    .ok_or("uniform:MIN-MAX, e.g. uniform:100-4000")?;
                match (number(a), number(b)) {
                    (Some(a), Some(b)) if a >= 1.0 && b >= a && b <= MAX_TOKENS as f64 => {
                        Ok(Lengths::Uniform(a as u64, b as u64))
                    }
                    _ => Err(format!(
                        "uniform:{range}: MIN and MAX are token counts, 1 <= MIN <= MAX <= {MAX_TOKENS}"
                    )),
                }
            }
            Some(("lognormal", cv)) => match number(cv) {
                Some(cv) if cv > 0.0 && cv <= 10.0 => Ok(Lengths::Lognormal {
                    mean: mean.max(1) as f64,
                    cv,
                }),
                _ => Err(format!(
                    "lognormal:{cv}: the coefficient of variation is a number in (0, 10]"
                )),
            },
            _ => Self::histogram(std::path::Path::new(spec)),
        }
    }

    /// A `tokens,weight` CSV histogram (a header line is allowed).
    fn histogram(path: &Path) -> Result<Lengths, String> {
        let text = read_text(path, HISTOGRAM_FILE).map_err(|e| {
            let why = e.problems.first().map_or(String::new(), |p| p.message.clone());
            format!("`{}` is neither fixed, uniform:MIN-MAX, lognormal:CV nor a readable histogram file ({why})", path.display())
        })?;
        let mut bins = Vec::new();
        for (i, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let cells: Vec<&str> = line.split(',').map(str::trim).collect();
            match (cells.first().and_then(|c| c.parse::<u64>().ok()), cells.get(1).and_then(|c| c.parse::<f64>().ok())) {
                (Some(n), Some(w)) if (1..=MAX_TOKENS).contains(&n) && w.is_finite() && w >= 0.0 => bins.push((n, w)),
                _ if i == 0 => {}
                _ => return Err(format!("{} line {}: expected `tokens,weight` (tokens >= 1, weight >= 0), found `{line}`", path.display(), i + 1)),
            }
        }
        if bins.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err(format!("{}: no bin with a positive weight", path.display()));
        }
        Ok(Lengths::Empirical(bins))
    }

    /// One draw, at least one token.
    pub fn draw(&self, rng: &mut Rng) -> u64 {
        let v = match self {
            Lengths::Fixed(n) => *n,
            Lengths::Uniform(a, b) => a + (rng.uniform() * (b - a + 1) as f64) as u64,
            Lengths::Lognormal { mean, cv } => rng.lognormal(*mean, *cv).round() as u64,
            Lengths::Empirical(bins) => {
                let total: f64 = bins.iter().map(|(_, w)| w).sum();
                let mut x = rng.uniform() * total;
                bins.iter()
                    .find(|(_, w)| {
                        x -= w;
                        x <= 0.0
                    })
                    .or(bins.last())
                    .map_or(1, |(n, _)| *n)
            }
        };
        v.clamp(1, MAX_TOKENS)
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        match self {
            Lengths::Fixed(n) => *n as f64,
            Lengths::Uniform(a, b) => (a + b) as f64 / 2.0,
            Lengths::Lognormal { mean, .. } => *mean,
            Lengths::Empirical(bins) => {
                let total: f64 = bins.iter().map(|(_, w)| w).sum();
                bins.iter().map(|(n, w)| *n as f64 * w).sum::<f64>() / total.max(f64::MIN_POSITIVE)
            }
        }
    }
}

/// One request of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRequest {
    /// Seconds from the trace's first request.
    pub arrival: f64,
    /// Prompt tokens.
    pub isl: u64,
    /// Output tokens.
    pub osl: u64,
    /// Ids of the prompt's 512-token blocks, each standing for the prefix up
    /// to it (Mooncake's `hash_ids`; empty when the trace has none).
    pub hash_ids: Vec<u64>,
}

/// The trace formats read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// `arrival_s,isl,osl` (seconds).
    Native,
    /// Azure LLM inference traces: `TIMESTAMP,ContextTokens,GeneratedTokens`
    /// with a `YYYY-MM-DD HH:MM:SS.fffffff` timestamp.
    Azure,
    /// Mooncake: JSON lines with `timestamp` (ms), `input_length`, `output_length`.
    Mooncake,
}

/// Reads a trace file: every line checked, problems located.
pub fn read_trace(path: &Path) -> Result<Vec<TraceRequest>, SpecError> {
    let name = path.display().to_string();
    let text = read_text(path, TRACE_FILE)?;
    let first = text.lines().next().unwrap_or("").trim();
    let format = if first.starts_with('{') {
        Format::Mooncake
    } else if first.eq_ignore_ascii_case("TIMESTAMP,ContextTokens,GeneratedTokens") {
        Format::Azure
    } else if first.replace(' ', "") == "arrival_s,isl,osl" {
        Format::Native
    } else {
        let p = Problem::at("line 1", format!("unknown trace header `{first}`"))
            .hint("arrival_s,isl,osl; TIMESTAMP,ContextTokens,GeneratedTokens (Azure); or Mooncake JSON lines");
        return Err(SpecError::new(&name, text, vec![p]));
    };
    let mut out = Vec::new();
    let mut problems = Vec::new();
    let mut offset = 0;
    let mut origin = None;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let start = offset;
        offset += line.len();
        let line = line.trim_end();
        if line.is_empty() || (i == 0 && format != Format::Mooncake) {
            continue;
        }
        let located = |msg: String, hint: &str| Problem {
            path: format!("line {}", i + 1),
            message: msg,
            hint: Some(hint.to_string()),
            span: Some((start, line.len().max(1))),
        };
        match parse_line(format, line) {
            Ok((t, isl, osl, hash_ids)) => {
                let t0 = *origin.get_or_insert(t);
                let arrival = t - t0;
                if let Some(prev) = out.last().map(|r: &TraceRequest| r.arrival) {
                    if arrival < prev {
                        problems.push(located(
                            format!(
                                "arrives at {arrival:.6} s, before the line above ({prev:.6} s)"
                            ),
                            "sort the trace by arrival time",
                        ));
                    }
                }
                if arrival < 0.0 {
                    problems.push(located(
                        "a negative time".into(),
                        "times count from the first request",
                    ));
                }
                out.push(TraceRequest {
                    arrival,
                    isl,
                    osl,
                    hash_ids,
                });
            }
            Err(msg) => problems.push(located(msg, format_hint(format))),
        }
        if problems.len() >= 20 {
            break;
        }
    }
    if out.is_empty() && problems.is_empty() {
        problems.push(Problem::at("line 2", "the trace has no request").hint(format_hint(format)));
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(SpecError::new(&name, text, problems))
    }
}

fn format_hint(f: Format) -> &'static str {
    match f {
        Format::Native => {
            "each line: arrival time in seconds, prompt tokens, output tokens (e.g. 0.125,2000,500)"
        }
        Format::Azure => "each line: 2023-11-16 18:15:46.6805900,ContextTokens,GeneratedTokens",
        Format::Mooncake => {
            "each line: {\"timestamp\": ms, \"input_length\": n, \"output_length\": n, ...}"
        }
    }
}

/// (time in seconds, prompt tokens, output tokens, block ids) of one line.
fn parse_line(format: Format, line: &str) -> Result<(f64, u64, u64, Vec<u64>), String> {
    let count = |s: &str, what: &str| -> Result<u64, String> {
        s.trim()
            .parse::<u64>()
            .ok()
            .filter(|v| (1..=MAX_TOKENS).contains(v))
            .ok_or_else(|| {
                format!(
                    "{what} `{}` is not a whole number from 1 to {MAX_TOKENS}",
                    s.trim()
                )
            })
    };
    match format {
        Format::Native | Format::Azure => {
            let cells: Vec<&str> = line.split(',').collect();
            let [t, isl, osl] = cells[..] else {
                return Err(format!("{} cells where 3 are expected", cells.len()));
            };
            let t = match format {
                Format::Azure => azure_seconds(t.trim())?,
                Format::Native | Format::Mooncake => t
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| format!("time `{}` is not a number", t.trim()))?,
            };
            if !t.is_finite() || t < 0.0 {
                return Err(format!("time {t} is not a time (negative or not finite)"));
            }
            Ok((
                t,
                count(isl, "prompt length")?,
                count(osl, "output length")?,
                Vec::new(),
            ))
        }
        Format::Mooncake => {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
            let field = |k: &str| {
                v.get(k)
                    .and_then(serde_json::Value::as_f64)
                    .ok_or_else(|| format!("no number `{k}`"))
            };
            let t = field("timestamp")?;
            if t < 0.0 {
                return Err(format!("timestamp {t} is negative"));
            }
            let n = |k: &str| -> Result<u64, String> {
                let x = field(k)?;
                (x >= 1.0 && x <= MAX_TOKENS as f64 && x.fract() == 0.0)
                    .then_some(x as u64)
                    .ok_or_else(|| {
                        format!("`{k}` {x} is not a whole number from 1 to {MAX_TOKENS}")
                    })
            };
            let isl = n("input_length")?;
            let ids = match v.get("hash_ids") {
                None => Vec::new(),
                Some(ids) => hash_ids(ids, isl)?,
            };
            Ok((t / 1000.0, isl, n("output_length")?, ids))
        }
    }
}

/// A Mooncake line's `hash_ids`: whole numbers, at most one per 512-token
/// block of its `isl`-token prompt.
fn hash_ids(v: &serde_json::Value, isl: u64) -> Result<Vec<u64>, String> {
    let bad = || "`hash_ids` is not a list of whole numbers".to_string();
    let ids = v
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_u64().ok_or_else(bad))
        .collect::<Result<Vec<u64>, String>>()?;
    let blocks = isl.div_ceil(super::prefix::BLOCK_TOKENS);
    if ids.len() as u64 > blocks {
        return Err(format!(
            "{} `hash_ids` for {isl} prompt tokens: at most {blocks} blocks of {}",
            ids.len(),
            super::prefix::BLOCK_TOKENS
        ));
    }
    Ok(ids)
}

/// Seconds since 1970 of `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC).
fn azure_seconds(s: &str) -> Result<f64, String> {
    let bad = || format!("timestamp `{s}` is not YYYY-MM-DD HH:MM:SS.fffffff");
    let (date, time) = s.split_once(' ').ok_or_else(bad)?;
    let d: Vec<i64> = date
        .split('-')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let t: Vec<f64> = time
        .split(':')
        .map(|x| x.parse().map_err(|_| bad()))
        .collect::<Result<_, _>>()?;
    let (&[y, m, day], &[hh, mm, ss]) = (&d[..], &t[..]) else {
        return Err(bad());
    };
    if !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || hh >= 24.0
        || mm >= 60.0
        || !(0.0..61.0).contains(&ss)
    {
        return Err(bad());
    }
    // Days from 1970-01-01 (civil calendar, H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days as f64 * 86_400.0 + hh * 3600.0 + mm * 60.0 + ss)
}

/// The next open-loop arrival: its time and lengths.
pub(crate) struct Source {
    arrivals: Arrivals,
    isl: Lengths,
    osl: Lengths,
    rng: Rng,
    clock: f64,
    next: usize,
}

impl Source {
    pub(crate) fn new(arrivals: Arrivals, isl: Lengths, osl: Lengths, seed: u64) -> Source {
        Source {
            arrivals,
            isl,
            osl,
            rng: Rng::new(seed),
            clock: 0.0,
            next: 0,
        }
    }

    /// Lengths of a new request.
    pub(crate) fn lengths(&mut self) -> (u64, u64) {
        (self.isl.draw(&mut self.rng), self.osl.draw(&mut self.rng))
    }

    /// The block ids of the trace's `i`-th request (empty without a trace).
    pub(crate) fn hash_ids(&self, i: usize) -> &[u64] {
        match &self.arrivals {
            Arrivals::Trace(t) => t.get(i).map_or(&[], |r| &r.hash_ids[..]),
            Arrivals::Poisson { .. } | Arrivals::Gamma { .. } | Arrivals::Closed { .. } => &[],
        }
    }

    /// The next open-loop request: its time, lengths and index (None for a
    /// closed loop, or a trace's end).
    pub(crate) fn next_arrival(&mut self) -> Option<(f64, u64, u64, usize)> {
        let gap = match &self.arrivals {
            Arrivals::Poisson { rate } => self.rng.exponential(1.0 / rate),
            Arrivals::Gamma { rate, cv } => {
                let k = 1.0 / (cv * cv);
                self.rng.gamma(k, 1.0 / (rate * k))
            }
            Arrivals::Closed { .. } => return None,
            Arrivals::Trace(t) => {
                let r = t.get(self.next)?;
                self.next += 1;
                return Some((r.arrival, r.isl, r.osl, self.next - 1));
            }
        };
        if self.next > 0 {
            self.clock += gap;
        }
        self.next += 1;
        let (isl, osl) = self.lengths();
        Some((self.clock, isl, osl, self.next - 1))
    }
}

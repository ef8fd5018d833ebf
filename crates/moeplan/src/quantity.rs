//! Parsing of quantities written with their unit, as people write them in
//! specs and plans: `"80 GiB"`, `"3.35 TB/s"`, `"989.4 TFLOP/s"`, `"10B"`
//! (parameters), `"20 GFLOP"`, `"35 tokens/ms"`, `"6 s"`, `"12%"`.
//!
//! Each parser accepts one dimension and converts to base units, so a
//! tokens-per-millisecond figure becomes tokens per second on the way in.
//! A bare number where a unit is needed is rejected with the accepted units.

use crate::units::{Bytes, BytesPerSecond, Flop, FlopPerSecond, Params, Seconds, TokensPerSecond};

/// What kind of quantity a string must be; names the accepted units in errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dimension {
    /// Bytes: B, kB, MB, GB, TB (decimal) and KiB, MiB, GiB, TiB (binary).
    Bytes,
    /// Bytes per second: B/s .. TB/s, GiB/s, Gbps/Gb/s (bits).
    Bandwidth,
    /// FLOP: FLOP, kFLOP .. PFLOP (also FLOPs).
    Flop,
    /// FLOP per second: TFLOP/s, TFLOPS, PFLOP/s ...
    FlopRate,
    /// A parameter count: 10B, 46.7B, 300M, 1.2T (or a plain number).
    Params,
    /// Time: ns, us, µs, ms, s, min.
    Time,
    /// Token rate: tokens/s, tokens/ms, tok/s, k tokens/s.
    TokenRate,
    /// A fraction: 12% or 0.12.
    Fraction,
}

impl Dimension {
    /// The units this dimension accepts, for diagnostics.
    pub(crate) fn accepted(self) -> &'static str {
        match self {
            Dimension::Bytes => "B, kB, MB, GB, TB, KiB, MiB, GiB, TiB (e.g. \"80 GB\")",
            Dimension::Bandwidth => "B/s, MB/s, GB/s, TB/s, GiB/s, Gb/s (e.g. \"3.35 TB/s\")",
            Dimension::Flop => "FLOP, MFLOP, GFLOP, TFLOP, PFLOP (e.g. \"20 GFLOP\")",
            Dimension::FlopRate => {
                "FLOP/s, GFLOP/s, TFLOP/s, TFLOPS, PFLOP/s (e.g. \"989 TFLOP/s\")"
            }
            Dimension::Params => "K, M, B, T (e.g. \"10B\", \"46.7B\")",
            Dimension::Time => "ns, us, µs, ms, s, min (e.g. \"30 ms\")",
            Dimension::TokenRate => "tokens/s, tokens/ms (e.g. \"35 tokens/ms\")",
            Dimension::Fraction => "% or a fraction (e.g. \"12%\" or 0.12)",
        }
    }
}

/// Splits "12.5 GB/s" into (12.5, "GB/s").
fn split(s: &str) -> Result<(f64, String), String> {
    let s = s.trim();
    let end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E' | '_')))
        .map_or(s.len(), |(i, _)| i);
    // "1e9" is a number but "1 EB" is not: back off a trailing 'e'/'E' that
    // is really a unit prefix.
    let (mut num, mut rest) = s.split_at(end);
    if (num.ends_with('e') || num.ends_with('E')) && !rest.trim().is_empty() {
        num = &s[..end - 1];
        rest = &s[end - 1..];
    }
    let num = num.replace('_', "");
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` does not start with a number"))?;
    if !value.is_finite() {
        return Err(format!("`{s}` is not a finite number"));
    }
    Ok((value, rest.trim().to_string()))
}

fn prefix(p: &str) -> Option<f64> {
    Some(match p {
        "" => 1.0,
        "k" | "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    })
}

fn unit_error(s: &str, dim: Dimension) -> String {
    format!(
        "`{s}` is not a valid quantity; accepted units: {}",
        dim.accepted()
    )
}

/// Parses a size in bytes.
pub fn parse_bytes(s: &str) -> Result<Bytes, String> {
    let (v, unit) = split(s)?;
    let binary = [
        ("KiB", 1024f64),
        ("MiB", 1024f64.powi(2)),
        ("GiB", 1024f64.powi(3)),
        ("TiB", 1024f64.powi(4)),
    ];
    if let Some((_, m)) = binary.iter().find(|(u, _)| *u == unit) {
        return Ok(Bytes(v * m));
    }
    let p = unit
        .strip_suffix('B')
        .and_then(prefix)
        .ok_or_else(|| unit_error(s, Dimension::Bytes))?;
    Ok(Bytes(v * p))
}

/// Parses a bandwidth in bytes per second (bits per second are converted).
pub fn parse_bandwidth(s: &str) -> Result<BytesPerSecond, String> {
    let (v, unit) = split(s)?;
    let unit = unit.replace("ps", "/s");
    let per_s = unit
        .strip_suffix("/s")
        .ok_or_else(|| unit_error(s, Dimension::Bandwidth))?;
    if let Some(bits) = per_s.strip_suffix('b') {
        let p = prefix(bits).ok_or_else(|| unit_error(s, Dimension::Bandwidth))?;
        return Ok(BytesPerSecond(v * p / 8.0));
    }
    parse_bytes(&format!("{v} {per_s}"))
        .map(|b| BytesPerSecond(b.0))
        .map_err(|_| unit_error(s, Dimension::Bandwidth))
}

fn flop_prefix(unit: &str) -> Option<f64> {
    let u = unit
        .strip_suffix("FLOPs")
        .or_else(|| unit.strip_suffix("FLOP"))
        .or_else(|| unit.strip_suffix("flops"))
        .or_else(|| unit.strip_suffix("flop"))?;
    prefix(u.trim())
}

/// Parses an amount of FLOP.
pub fn parse_flop(s: &str) -> Result<Flop, String> {
    let (v, unit) = split(s)?;
    flop_prefix(&unit)
        .map(|p| Flop(v * p))
        .ok_or_else(|| unit_error(s, Dimension::Flop))
}

/// Parses a FLOP rate. `TFLOPS` means per second; `TFLOPs` alone is
/// ambiguous in plans and is read as per second only with `/s`.
pub fn parse_flop_rate(s: &str) -> Result<FlopPerSecond, String> {
    let (v, unit) = split(s)?;
    let p = if let Some(u) = unit.strip_suffix("/s") {
        flop_prefix(u)
    } else if let Some(u) = unit.strip_suffix("FLOPS") {
        prefix(u.trim())
    } else {
        None
    };
    p.map(|p| FlopPerSecond(v * p))
        .ok_or_else(|| unit_error(s, Dimension::FlopRate))
}

/// Parses a parameter count: "10B", "46.7 B", "300M", or a plain number.
pub fn parse_params(s: &str) -> Result<Params, String> {
    let (v, unit) = split(s)?;
    let u = unit
        .trim_end_matches("params")
        .trim_end_matches("parameters")
        .trim();
    let p = match u {
        "" => 1.0,
        "K" | "k" => 1e3,
        "M" => 1e6,
        "B" | "G" => 1e9,
        "T" => 1e12,
        _ => return Err(unit_error(s, Dimension::Params)),
    };
    Ok(Params(v * p))
}

/// Parses a duration.
pub fn parse_time(s: &str) -> Result<Seconds, String> {
    let (v, unit) = split(s)?;
    let m = match unit.as_str() {
        "ns" => 1e-9,
        "us" | "µs" | "μs" => 1e-6,
        "ms" => 1e-3,
        "s" | "sec" | "seconds" => 1.0,
        "min" => 60.0,
        _ => return Err(unit_error(s, Dimension::Time)),
    };
    Ok(Seconds(v * m))
}

/// Parses a token rate; per-millisecond figures become per second.
pub fn parse_token_rate(s: &str) -> Result<TokensPerSecond, String> {
    let (v, unit) = split(s)?;
    let unit = unit.replace(' ', "");
    let (mult, rest) = match unit.strip_prefix('k') {
        Some(r) if r.starts_with("tok") => (1e3, r.to_string()),
        _ => (1.0, unit.clone()),
    };
    let per = rest
        .strip_prefix("tokens")
        .or_else(|| rest.strip_prefix("token"))
        .or_else(|| rest.strip_prefix("tok"))
        .ok_or_else(|| unit_error(s, Dimension::TokenRate))?;
    let scale = match per {
        "/s" | "/sec" => 1.0,
        "/ms" => 1e3,
        "/min" => 1.0 / 60.0,
        _ => return Err(unit_error(s, Dimension::TokenRate)),
    };
    Ok(TokensPerSecond(v * mult * scale))
}

/// Parses a fraction: "12%" is 0.12; a plain number is taken as a fraction.
pub fn parse_fraction(s: &str) -> Result<f64, String> {
    let (v, unit) = split(s)?;
    match unit.as_str() {
        "%" => Ok(v / 100.0),
        "" => Ok(v),
        _ => Err(unit_error(s, Dimension::Fraction)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_decimal_and_binary() {
        assert_eq!(parse_bytes("80 GiB").unwrap().0, 80.0 * 1024f64.powi(3));
        assert_eq!(parse_bytes("1.25 GB").unwrap().0, 1.25e9);
        assert_eq!(parse_bytes("64GB").unwrap().0, 64e9);
        assert!(parse_bytes("64").is_err());
        assert!(parse_bytes("64 GFLOP").is_err());
    }

    #[test]
    fn bandwidth_in_bytes_and_bits() {
        assert_eq!(parse_bandwidth("3.35 TB/s").unwrap().0, 3.35e12);
        assert_eq!(parse_bandwidth("400 Gb/s").unwrap().0, 50e9);
        assert_eq!(parse_bandwidth("1.8TBps").unwrap().0, 1.8e12);
    }

    #[test]
    fn flop_and_rates() {
        assert_eq!(parse_flop("20 GFLOP").unwrap().0, 20e9);
        assert_eq!(parse_flop("20TFLOPs").unwrap().0, 20e12);
        assert_eq!(parse_flop_rate("989.4 TFLOP/s").unwrap().0, 989.4e12);
        assert_eq!(parse_flop_rate("400TFLOPS").unwrap().0, 400e12);
        assert!(parse_flop_rate("400 TFLOP").is_err());
    }

    #[test]
    fn token_rates_convert_per_ms_to_per_s() {
        assert_eq!(parse_token_rate("35 tokens/ms").unwrap().0, 35_000.0);
        assert_eq!(parse_token_rate("32550 tokens/s").unwrap().0, 32_550.0);
        assert!(parse_token_rate("35").is_err());
    }

    #[test]
    fn params_time_fraction() {
        assert_eq!(parse_params("10B").unwrap().0, 10e9);
        assert_eq!(parse_params("46.7 B").unwrap().0, 46.7e9);
        assert_eq!(parse_time("30 ms").unwrap().0, 0.03);
        assert_eq!(parse_time("6 s").unwrap().0, 6.0);
        assert_eq!(parse_fraction("12%").unwrap(), 0.12);
        assert_eq!(parse_fraction("0.9").unwrap(), 0.9);
    }
}

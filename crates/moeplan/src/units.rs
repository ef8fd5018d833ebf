//! Physical units as types.
//!
//! Most errors in hand-written deployment plans are unit errors: a per-layer
//! figure used per token, tokens per millisecond written as tokens per
//! second, GB against GiB. Every quantity that reaches a user is one of the
//! newtypes below; they only combine in ways that are dimensionally right
//! (`Flop / FlopPerSecond = Seconds`, `Bytes / BytesPerSecond = Seconds`), and
//! `Display` picks a readable scale. JSON carries the plain number in base
//! units (bytes, FLOP, seconds, per second); a whole count (bytes, FLOP,
//! parameters) is written as an integer.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Div, Mul, Sub};

/// Formats `value` with an SI prefix chosen so the mantissa is in [1, 1000).
/// `value` with `precision` decimals, exactly as `{:.precision$}` writes
/// it, without the standard library's exact float formatting where the
/// answer is certain: integral values (counts, whole tokens, round
/// quantities: its slowest case, big-number arithmetic) are written as
/// integers, and any other value whose scaled form `value × 10^precision`
/// is not within its rounding error of a half is rounded to an integer and
/// written as one with the decimal point put back. The rest (ties, values
/// too large for an exact integer, many decimals) go through `{:.p$}`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Fixed(pub f64, pub usize);

/// The largest integer an f64 holds exactly and then some margin: scaled
/// values below it round to an exact u64.
const EXACT_INTEGERS: f64 = 4.0e15;

/// Powers of ten an f64 holds exactly, for the decimals `Fixed` scales by.
const POW10: [f64; 7] = [1.0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];

impl fmt::Display for Fixed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Fixed(x, precision) = *self;
        let negative = x.is_sign_negative();
        // Below 2^53 every integral f64 is an exact integer; -0.0 keeps its
        // sign through the standard path.
        if x.fract() == 0.0 && x.abs() < 9.0e15 && !(x == 0.0 && negative) {
            write!(f, "{}", x as i64)?;
            if precision > 0 {
                f.write_str(".")?;
                for _ in 0..precision {
                    f.write_str("0")?;
                }
            }
            return Ok(());
        }
        let Some(scale) = POW10.get(precision) else {
            return write!(f, "{x:.precision$}");
        };
        // |x| × 10^p is within |x| × 10^p × 2^-52 of the exact decimal
        // shift (one rounding in the product, 10^p itself exact): where its
        // fraction is farther than that from a half, rounding it rounds the
        // exact value the same way.
        let y = x.abs() * scale;
        let margin = y * 4.0e-16 + 1e-300;
        if !(y < EXACT_INTEGERS && ((y.fract() - 0.5).abs() > margin)) {
            return write!(f, "{x:.precision$}");
        }
        let n = y.round() as u64;
        let unit = *scale as u64;
        let sign = if negative { "-" } else { "" };
        if precision == 0 {
            write!(f, "{sign}{n}")
        } else {
            write!(f, "{sign}{}.{:0precision$}", n / unit, n % unit)
        }
    }
}

fn si(f: &mut fmt::Formatter<'_>, value: f64, unit: &str) -> fmt::Result {
    if unit.is_empty() {
        return count(f, value);
    }
    const PREFIXES: [(f64, &str); 7] = [
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
    ];
    let abs = value.abs();
    let (scale, prefix) = PREFIXES
        .iter()
        .copied()
        .find(|(s, _)| abs >= *s)
        .unwrap_or((1.0, ""));
    let mantissa = value / scale;
    let precision = f.precision().unwrap_or(if mantissa.abs() >= 100.0 {
        1
    } else if mantissa.abs() >= 10.0 {
        2
    } else {
        3
    });
    write!(f, "{} {prefix}{unit}", Fixed(mantissa, precision))
}

/// A plain count with K/M/B/T suffixes (B = billion, as model sizes are quoted).
fn count(f: &mut fmt::Formatter<'_>, value: f64) -> fmt::Result {
    const SUFFIXES: [(f64, &str); 4] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    let (scale, suffix) = SUFFIXES
        .iter()
        .copied()
        .find(|(s, _)| value.abs() >= *s)
        .unwrap_or((1.0, ""));
    let m = value / scale;
    let precision = f.precision().unwrap_or(if m.abs() >= 100.0 {
        1
    } else if m.abs() >= 10.0 {
        2
    } else {
        3
    });
    write!(f, "{}{suffix}", Fixed(m, precision))
}

/// How a quantity is written in JSON (also for the plain `f64` fields of
/// outputs that hold counts: `#[serde(serialize_with = "crate::units::json::count")]`).
pub(crate) mod json {
    /// A rate or any real quantity: the number as it is.
    pub(crate) fn real<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*v)
    }

    /// The largest whole number an `f64` holds exactly (2^53).
    const EXACT: f64 = 9_007_199_254_740_992.0;

    /// A count (bytes, FLOP, parameters): an integer when it is whole and
    /// held exactly (`8994816`, not `8994816.0`), else the number.
    pub(crate) fn count<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.fract() != 0.0 || v.abs() > EXACT {
            s.serialize_f64(*v)
        } else if *v >= 0.0 {
            s.serialize_u64(*v as u64)
        } else {
            s.serialize_i64(*v as i64)
        }
    }

    /// A count that may be absent, as `count`.
    pub(crate) fn count_opt<S: serde::Serializer>(
        v: &Option<f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => count(v, s),
            None => s.serialize_none(),
        }
    }

    /// Counts by name, each as `count`.
    pub(crate) fn count_map<S: serde::Serializer, K: serde::Serialize>(
        m: &std::collections::BTreeMap<K, f64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = s.serialize_map(Some(m.len()))?;
        for (k, v) in m {
            out.serialize_entry(k, &Count(*v))?;
        }
        out.end()
    }

    /// A count as a value of its own (for `count_map`).
    struct Count(f64);

    impl serde::Serialize for Count {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            count(&self.0, s)
        }
    }
}

macro_rules! quantity {
    ($(#[$doc:meta])* $name:ident, $unit:literal, $json:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(#[serde(serialize_with = $json)] pub(crate) f64);

        impl $name {
            /// Zero of this unit.
            pub const ZERO: Self = Self(0.0);
            /// A quantity of `v` base units.
            pub const fn new(v: f64) -> Self {
                Self(v)
            }
            /// The plain number in base units.
            pub fn value(self) -> f64 {
                self.0
            }
            /// The larger of two quantities.
            pub fn max(self, other: Self) -> Self {
                Self(self.0.max(other.0))
            }
            /// The smaller of two quantities.
            pub fn min(self, other: Self) -> Self {
                Self(self.0.min(other.0))
            }
            /// A total order (for sorting).
            pub fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.total_cmp(&other.0)
            }
        }
        impl Add for $name {
            type Output = Self;
            fn add(self, rhs: Self) -> Self {
                Self(self.0 + rhs.0)
            }
        }
        impl AddAssign for $name {
            fn add_assign(&mut self, rhs: Self) {
                self.0 += rhs.0;
            }
        }
        impl Sub for $name {
            type Output = Self;
            fn sub(self, rhs: Self) -> Self {
                Self(self.0 - rhs.0)
            }
        }
        impl Mul<f64> for $name {
            type Output = Self;
            fn mul(self, rhs: f64) -> Self {
                Self(self.0 * rhs)
            }
        }
        impl Div<f64> for $name {
            type Output = Self;
            fn div(self, rhs: f64) -> Self {
                Self(self.0 / rhs)
            }
        }
        /// The ratio of two quantities of the same unit is a plain number.
        impl Div for $name {
            type Output = f64;
            fn div(self, rhs: Self) -> f64 {
                self.0 / rhs.0
            }
        }
        impl Sum for $name {
            fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
                Self(iter.map(|q| q.0).sum())
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                si(f, self.0, $unit)
            }
        }
    };
}

quantity!(
    /// A size in bytes (decimal prefixes: 1 GB = 10^9 bytes).
    Bytes,
    "B",
    "json::count"
);
quantity!(
    /// An amount of floating-point work.
    Flop,
    "FLOP",
    "json::count"
);
quantity!(
    /// Floating-point operations per second.
    FlopPerSecond,
    "FLOP/s",
    "json::real"
);
quantity!(
    /// A transfer rate in bytes per second.
    BytesPerSecond,
    "B/s",
    "json::real"
);
quantity!(
    /// Tokens per second. There is deliberately no tokens-per-millisecond
    /// type: a figure given per millisecond is converted on the way in.
    TokensPerSecond,
    "tokens/s",
    "json::real"
);
quantity!(
    /// A count of model parameters (displayed as 452.3M, 116.8B, 1.03T).
    Params,
    "",
    "json::count"
);

/// A duration in seconds.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, PartialOrd, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Seconds(pub(crate) f64);

impl Seconds {
    /// Zero seconds.
    pub(crate) const ZERO: Self = Self(0.0);
    /// `v` seconds.
    pub const fn new(v: f64) -> Self {
        Self(v)
    }
    /// From milliseconds.
    pub fn from_ms(ms: f64) -> Self {
        Self(ms / 1e3)
    }
    /// From microseconds.
    pub fn from_us(us: f64) -> Self {
        Self(us / 1e6)
    }
    /// The plain number of seconds.
    pub fn value(self) -> f64 {
        self.0
    }
    /// In milliseconds.
    pub fn ms(self) -> f64 {
        self.0 * 1e3
    }
    /// In microseconds.
    pub fn us(self) -> f64 {
        self.0 * 1e6
    }
    /// The larger of two durations.
    pub fn max(self, other: Self) -> Self {
        Self(self.0.max(other.0))
    }
    /// The smaller of two durations.
    pub fn min(self, other: Self) -> Self {
        Self(self.0.min(other.0))
    }
    /// A total order (for sorting).
    pub fn total_cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl Add for Seconds {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0 + rhs.0)
    }
}
impl AddAssign for Seconds {
    fn add_assign(&mut self, rhs: Self) {
        self.0 += rhs.0;
    }
}
impl Sub for Seconds {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0 - rhs.0)
    }
}
impl Mul<f64> for Seconds {
    type Output = Self;
    fn mul(self, rhs: f64) -> Self {
        Self(self.0 * rhs)
    }
}
impl Div<f64> for Seconds {
    type Output = Self;
    fn div(self, rhs: f64) -> Self {
        Self(self.0 / rhs)
    }
}
impl Div for Seconds {
    type Output = f64;
    fn div(self, rhs: Self) -> f64 {
        self.0 / rhs.0
    }
}
impl Sum for Seconds {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        Self(iter.map(|q| q.0).sum())
    }
}
impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let abs = s.abs();
        let (v, unit) = if abs >= 1.0 || abs == 0.0 {
            (s, "s")
        } else if abs >= 1e-3 {
            (s * 1e3, "ms")
        } else if abs >= 1e-6 {
            (s * 1e6, "µs")
        } else {
            (s * 1e9, "ns")
        };
        let precision = f.precision().unwrap_or(if v.abs() >= 100.0 {
            1
        } else if v.abs() >= 10.0 {
            2
        } else {
            3
        });
        write!(f, "{} {unit}", Fixed(v, precision))
    }
}

impl Div<FlopPerSecond> for Flop {
    type Output = Seconds;
    fn div(self, rhs: FlopPerSecond) -> Seconds {
        Seconds(self.0 / rhs.0)
    }
}
impl Div<BytesPerSecond> for Bytes {
    type Output = Seconds;
    fn div(self, rhs: BytesPerSecond) -> Seconds {
        Seconds(self.0 / rhs.0)
    }
}
impl Div<Seconds> for Flop {
    type Output = FlopPerSecond;
    fn div(self, rhs: Seconds) -> FlopPerSecond {
        FlopPerSecond(self.0 / rhs.0)
    }
}
impl Div<Seconds> for Bytes {
    type Output = BytesPerSecond;
    fn div(self, rhs: Seconds) -> BytesPerSecond {
        BytesPerSecond(self.0 / rhs.0)
    }
}
impl Mul<Seconds> for BytesPerSecond {
    type Output = Bytes;
    fn mul(self, rhs: Seconds) -> Bytes {
        Bytes(self.0 * rhs.0)
    }
}
impl Mul<Seconds> for FlopPerSecond {
    type Output = Flop;
    fn mul(self, rhs: Seconds) -> Flop {
        Flop(self.0 * rhs.0)
    }
}

impl TokensPerSecond {
    /// `tokens` produced in `time`.
    pub(crate) fn from_tokens(tokens: f64, time: Seconds) -> Self {
        Self(tokens / time.0)
    }
    /// The same rate per millisecond, for comparison with plans that quote it.
    pub fn per_ms(self) -> f64 {
        self.0 / 1e3
    }
}

/// Binary gibibytes, for the few places where a vendor states capacity in GiB.
pub(crate) const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Binary mebibytes, the unit buffer sizes are stated in.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `Fixed` writes what `{:.p$}` writes: integral values (its fast
    /// path), halves and quarters (exact binary fractions), signed zeros,
    /// values past 2^53, and any other.
    #[test]
    fn fixed_writes_what_the_standard_format_writes() {
        let values = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            128.0,
            2000.0,
            0.5,
            2.5,
            -3.5,
            61.25,
            1e15,
            9.0e15,
            1e16,
            1e20,
            -7e18,
            0.1,
            1234.5678,
            9.99995,
            f64::MAX,
        ];
        for v in values {
            for p in 0..4 {
                assert_eq!(Fixed(v, p).to_string(), format!("{v:.p$}"), "{v} at {p}");
            }
        }
    }

    /// Values near a rounding half at each precision, whose scaled form is
    /// within a few ulps of x.5: the fast path must leave them to `{:.p$}`.
    #[test]
    fn fixed_leaves_near_halves_to_the_standard_format() {
        for p in 0..7usize {
            for k in 0..2000u64 {
                let half = (k as f64 + 0.5) / 10f64.powi(p as i32);
                let mut v = half;
                for _ in 0..4 {
                    for w in [v, -v] {
                        assert_eq!(Fixed(w, p).to_string(), format!("{w:.p$}"), "{w:e} at {p}");
                    }
                    v = f64::from_bits(v.to_bits() + 1);
                }
                let mut v = half;
                for _ in 0..4 {
                    v = f64::from_bits(v.to_bits() - 1);
                    assert_eq!(Fixed(v, p).to_string(), format!("{v:.p$}"), "{v:e} at {p}");
                }
            }
        }
    }

    proptest! {
        /// Any finite value at any precision the estimate writes.
        #[test]
        fn fixed_matches_the_standard_format_anywhere(
            v in prop::num::f64::POSITIVE
                | prop::num::f64::NEGATIVE
                | prop::num::f64::NORMAL
                | prop::num::f64::SUBNORMAL
                | prop::num::f64::ZERO,
            p in 0usize..8,
        ) {
            prop_assert_eq!(Fixed(v, p).to_string(), format!("{v:.p$}"));
        }

        /// Magnitudes the estimate writes: 1e-6 to 1e12, any mantissa.
        #[test]
        fn fixed_matches_the_standard_format_in_range(m in 1.0f64..10.0, e in -6i32..12, neg in any::<bool>(), p in 0usize..7) {
            let v = m * 10f64.powi(e) * if neg { -1.0 } else { 1.0 };
            prop_assert_eq!(Fixed(v, p).to_string(), format!("{v:.p$}"));
        }

        #[test]
        fn fixed_matches_the_standard_format(whole in -1e7f64..1e7, scale in 0u32..4, p in 0usize..4) {
            // Integral values and values with a few decimals, both common.
            let v = (whole * 10f64.powi(scale as i32)).round() / 10f64.powi(scale as i32);
            prop_assert_eq!(Fixed(v, p).to_string(), format!("{v:.p$}"));
        }
    }

    #[test]
    fn display_picks_readable_scale() {
        assert_eq!(Bytes(1.25e9).to_string(), "1.250 GB");
        assert_eq!(Flop(2.0e10).to_string(), "20.00 GFLOP");
        assert_eq!(Seconds(0.0305).to_string(), "30.50 ms");
        assert_eq!(Seconds(6.0).to_string(), "6.000 s");
        assert_eq!(FlopPerSecond(989.4e12).to_string(), "989.4 TFLOP/s");
        assert_eq!(TokensPerSecond(32_550.0).to_string(), "32.55 ktokens/s");
        assert_eq!(Params(46.7e9).to_string(), "46.70B");
        assert_eq!(Params(452.3e6).to_string(), "452.3M");
    }

    #[test]
    fn division_gives_time() {
        // 20 GFLOP at 240 TFLOP/s is 83.3 µs.
        let t = Flop(20e9) / FlopPerSecond(240e12);
        assert!((t.us() - 83.333).abs() < 1e-3);
        // 1.44 TB/s reads 2 GB in 1.389 ms.
        let t = Bytes(2e9) / BytesPerSecond(1.44e12);
        assert!((t.ms() - 1.3889).abs() < 1e-4);
    }

    /// A fraction read from data is checked as it is read: 0.9 is one,
    /// 1.5 and −0.1 are refused naming the range.
    #[test]
    fn fractions_are_checked_when_read() {
        let read = |t: &str| serde_json::from_str::<Fraction>(t);
        assert_eq!(read("0.9").expect("a fraction").value(), 0.9);
        for bad in ["1.5", "-0.1"] {
            let e = read(bad).expect_err(bad).to_string();
            assert!(e.contains("not a fraction in [0, 1]"), "{e}");
        }
    }

    #[test]
    fn per_ms_is_a_thousandth_of_per_s() {
        assert_eq!(TokensPerSecond(32_550.0).per_ms(), 32.55);
    }
}

/// A share in [0, 1] (of GPU memory an engine may use, ...): built only
/// through [`Fraction::new`], which refuses anything else, so a fraction
/// that reaches the cost model is one.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct Fraction(f64);

impl Fraction {
    /// None of it.
    pub const ZERO: Fraction = Fraction(0.0);

    /// `x` as a fraction, or `None` unless it is finite and in [0, 1].
    pub fn new(x: f64) -> Option<Fraction> {
        (x.is_finite() && (0.0..=1.0).contains(&x)).then_some(Fraction(x))
    }

    /// Whether it is none (left out of JSON, so inputs without it keep their output).
    pub fn is_zero(&self) -> bool {
        self.0 == 0.0
    }

    /// What is left: `1 − self`.
    pub(crate) fn complement(self) -> Fraction {
        Fraction(1.0 - self.0)
    }

    /// A fraction known in the source (engine presets, defaults).
    pub(crate) const fn known(x: f64) -> Fraction {
        Fraction(x)
    }

    /// The plain number.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The larger of two fractions.
    pub fn max(self, other: Fraction) -> Fraction {
        Fraction(self.0.max(other.0))
    }
}

/// A fraction in a data file (an engine preset) is checked as it is read.
impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Fraction, D::Error> {
        let x = f64::deserialize(d)?;
        Fraction::new(x)
            .ok_or_else(|| serde::de::Error::custom(format!("{x} is not a fraction in [0, 1]")))
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%", Fixed(self.0 * 100.0, 0))
    }
}

impl Mul<Fraction> for Bytes {
    type Output = Bytes;
    fn mul(self, rhs: Fraction) -> Bytes {
        Bytes(self.0 * rhs.0)
    }
}

/// A count of tokens (a prompt's, an output's).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(transparent)]
pub struct Tokens(pub(crate) u64);

impl Tokens {
    /// `n` tokens.
    pub const fn new(n: u64) -> Tokens {
        Tokens(n)
    }

    /// The count.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The count as a real number, for rates and costs.
    pub fn as_f64(self) -> f64 {
        self.0 as f64
    }
}

impl fmt::Display for Tokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

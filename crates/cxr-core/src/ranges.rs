//! Range checks the configuration types share; each message names the offending field.
//!
//! [`at_least_one`] is the command-line counterpart: a value parser for count flags.

use std::num::ParseIntError;
use std::str::FromStr;

/// The first of `fields` (name, value) that is not a finite number ≥ 0. Learning rates,
/// weight decays and clip norms are such numbers: a negative learning rate climbs the loss,
/// a negative weight decay inflates the weights, and nothing in the step itself refuses them.
pub fn non_negative(fields: &[(&str, f64)]) -> Result<(), String> {
    match fields.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        Some((name, v)) => Err(format!("{name} = {v} is not a finite number >= 0")),
        None => Ok(()),
    }
}

/// The first of `fields` that is not a finite number > 0. Normalisation epsilons and rotary
/// bases are such numbers: transformers reads a zero or negative one without complaint, and
/// the model then returns NaN.
pub fn positive(fields: &[(&str, f64)]) -> Result<(), String> {
    match fields.iter().find(|(_, v)| !(v.is_finite() && *v > 0.0)) {
        Some((name, v)) => Err(format!("{name} {v} is not a positive number")),
        None => Ok(()),
    }
}

/// The first of `fields` that is not a probability in [0, 1] (NaN included).
pub fn probabilities(fields: &[(&str, f64)]) -> Result<(), String> {
    match fields.iter().find(|(_, p)| !(0.0..=1.0).contains(p)) {
        Some((name, p)) => Err(format!("{name} {p} is outside [0, 1]")),
        None => Ok(()),
    }
}

/// The first of `fields` (name, (min, max)) that is not a range of image-area fractions,
/// 0 < min ≤ max ≤ 1, as `RandomResizedCrop` scales are. An inverted range panics in the
/// crop sampler.
pub fn area_fractions(fields: &[(&str, (f64, f64))]) -> Result<(), String> {
    match fields
        .iter()
        .find(|(_, (lo, hi))| !(*lo > 0.0 && lo <= hi && *hi <= 1.0))
    {
        Some((name, (lo, hi))) => Err(format!(
            "{name} ({lo}, {hi}) is not an area-fraction range 0 < min <= max <= 1"
        )),
        None => Ok(()),
    }
}

/// The unsigned integer types [`at_least_one`] parses: `u8`, `u16`, `u32`, `u64`, `usize`.
pub trait Count: sealed::Sealed + FromStr<Err = ParseIntError> + PartialEq + Copy {
    /// The count that [`at_least_one`] refuses.
    const ZERO: Self;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! count {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Count for $t {
            const ZERO: Self = 0;
        }
    )*};
}
count!(u8, u16, u32, u64, usize);

/// Parses a count that must be at least 1: a batch size, a number of steps, repeats, seeds,
/// folds, channels, a checkpoint interval. Zero is refused rather than read as 1 (the
/// `.max(1)` that hid it) or passed on to code that divides by it or panics on it
/// (`slice::chunks(0)`). Command-line tools use it as a clap value parser,
/// `#[arg(long, value_parser = cxr_core::ranges::at_least_one::<usize>)]`; it knows nothing of
/// clap, which prints the message after the flag and the value.
pub fn at_least_one<T: Count>(s: &str) -> Result<T, String> {
    let v: T = s
        .parse()
        .map_err(|e| format!("{s:?} is not a whole number >= 1: {e}"))?;
    if v == T::ZERO {
        return Err("0 is not allowed here: give at least 1".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_offender() {
        assert!(non_negative(&[("lr", 1e-3), ("clip", 0.0)]).is_ok());
        assert_eq!(
            non_negative(&[("lr", 1e-3), ("wd", -0.1), ("clip", f64::NAN)]).unwrap_err(),
            "wd = -0.1 is not a finite number >= 0"
        );
        assert!(non_negative(&[("lr", f64::INFINITY)]).is_err());
        assert!(positive(&[("eps", 1e-12)]).is_ok());
        assert_eq!(
            positive(&[("eps", 1e-6), ("theta", 0.0)]).unwrap_err(),
            "theta 0 is not a positive number"
        );
        assert!(positive(&[("eps", f64::NAN)]).is_err());
        assert!(probabilities(&[("p", 0.0), ("q", 1.0)]).is_ok());
        assert_eq!(
            probabilities(&[("p", 0.5), ("q", 1.5)]).unwrap_err(),
            "q 1.5 is outside [0, 1]"
        );
        assert!(probabilities(&[("p", f64::NAN)]).is_err());
        assert!(area_fractions(&[("s", (0.05, 0.32)), ("t", (1.0, 1.0))]).is_ok());
        assert_eq!(
            area_fractions(&[("s", (0.05, 0.32)), ("t", (1.0, 0.32))]).unwrap_err(),
            "t (1, 0.32) is not an area-fraction range 0 < min <= max <= 1"
        );
        assert!(area_fractions(&[("s", (0.0, 0.32))]).is_err());
        assert!(area_fractions(&[("s", (f64::NAN, 0.32))]).is_err());
    }

    #[test]
    fn counts_refuse_zero() {
        assert_eq!(at_least_one::<usize>("1"), Ok(1));
        assert_eq!(at_least_one::<u64>("50"), Ok(50));
        assert_eq!(at_least_one::<u32>("4294967295"), Ok(u32::MAX));
        assert_eq!(at_least_one::<u8>("255"), Ok(255));
        assert_eq!(
            at_least_one::<usize>("0").unwrap_err(),
            "0 is not allowed here: give at least 1"
        );
        assert_eq!(
            at_least_one::<u64>("00").unwrap_err(),
            "0 is not allowed here: give at least 1"
        );
        assert_eq!(
            at_least_one::<usize>("-1").unwrap_err(),
            "\"-1\" is not a whole number >= 1: invalid digit found in string"
        );
        assert_eq!(
            at_least_one::<u32>("4294967296").unwrap_err(),
            "\"4294967296\" is not a whole number >= 1: number too large to fit in target type"
        );
        assert!(at_least_one::<usize>("").is_err());
        assert!(at_least_one::<usize>("2.5").is_err());
        assert!(at_least_one::<usize>(" 3").is_err());
    }
}

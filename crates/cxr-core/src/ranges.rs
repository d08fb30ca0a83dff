//! Range checks the configuration types share; each message names the offending field.

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
    }
}

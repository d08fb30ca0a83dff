//! The range check every training configuration runs on its optimizer numbers.

/// The first of `fields` (name, value) that is not a finite number ≥ 0, as a message naming
/// it. Learning rates, weight decays and clip norms are such numbers: a negative learning
/// rate climbs the loss, a negative weight decay inflates the weights, and nothing in the
/// step itself refuses them.
pub fn non_negative(fields: &[(&str, f64)]) -> Result<(), String> {
    match fields.iter().find(|(_, v)| !(v.is_finite() && *v >= 0.0)) {
        Some((name, v)) => Err(format!("{name} = {v} is not a finite number >= 0")),
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
    }
}

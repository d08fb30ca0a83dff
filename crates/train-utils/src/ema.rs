//! The EMA teacher update.

use candle_core::Var;

use crate::{Error, Result};

/// `teacher ← m·teacher + (1 − m)·student` for every teacher variable, matched by name
/// (dinov2's `update_teacher`, with `m` from the momentum schedule). Every teacher variable
/// must have a student counterpart of the same shape.
pub fn ema_update(
    teacher: &[(String, Var)],
    student: &[(String, Var)],
    momentum: f64,
) -> Result<()> {
    let students: std::collections::HashMap<&str, &Var> =
        student.iter().map(|(n, v)| (n.as_str(), v)).collect();
    for (name, t) in teacher {
        let s = students
            .get(name.as_str())
            .ok_or_else(|| Error::mismatch(name, "no student variable of that name"))?;
        if s.dims() != t.dims() {
            return Err(Error::mismatch(
                name,
                format!("teacher shape {:?}, student {:?}", t.dims(), s.dims()),
            ));
        }
        let s = s.as_tensor().detach().to_dtype(t.dtype())?;
        if fused_ops::optim::supports(&[t.as_tensor(), &s]) {
            fused_ops::optim::ema_update(t.as_tensor(), &s, momentum)?;
            continue;
        }
        let new = ((t.as_tensor() * momentum)? + (s * (1.0 - momentum))?)?;
        t.set(&new)?;
    }
    Ok(())
}

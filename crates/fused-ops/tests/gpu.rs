//! The CUDA kernels against their CPU references (needs the `cuda` feature and a GPU; ignored
//! without the feature, skipped with a message on a CUDA build without a GPU).
#![allow(clippy::unwrap_used)]

// without the cuda feature there is nothing to check, and a pass would claim a check that
// did not run
#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs the cuda feature and a CUDA GPU"
)]
fn cuda_kernels_match_cpu_references() {
    let device = match fused_ops::cuda_device() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED cuda_kernels_match_cpu_references: {why}");
            return;
        }
    };
    let checks = fused_ops::parity::device_vs_cpu(&device, 11).unwrap();
    let failed: Vec<_> = checks.iter().filter(|c| !c.passed()).collect();
    for c in &checks {
        eprintln!(
            "{:<40} rel err {:.2e} (tol {:.0e})",
            c.name, c.rel_err, c.tolerance
        );
    }
    assert!(failed.is_empty(), "failed: {failed:?}");
}

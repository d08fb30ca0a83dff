//! The fused CUDA inference path of the blocks (flash-style attention and fused epilogues)
//! against the composed path on the same GPU and against the CPU
//! (`vit_backbone::gpu_parity`, which `gpu_suite parity` reports too). Needs the `cuda`
//! feature and a GPU; ignored without the feature, skipped with a message on a CUDA build
//! without a GPU.
#![allow(clippy::unwrap_used)]

// without the cuda feature there is nothing to check, and a pass would claim a check that
// did not run
#[test]
#[cfg_attr(
    not(feature = "cuda"),
    ignore = "needs the cuda feature and a CUDA GPU"
)]
fn fused_gpu_blocks_match_composed_and_cpu() {
    let device = match fused_ops::cuda_device() {
        Ok(d) => d,
        Err(why) => {
            eprintln!("SKIPPED fused_gpu_blocks_match_composed_and_cpu: {why}");
            return;
        }
    };
    let checks = vit_backbone::gpu_parity::fused_blocks_vs_composed(&device).unwrap();
    for (name, rel_err, tol) in &checks {
        eprintln!("{name:<46} rel err {rel_err:.2e} (tol {tol:.0e})");
    }
    let failed: Vec<_> = checks
        .iter()
        .filter(|(_, e, tol)| e.is_nan() || e > tol)
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

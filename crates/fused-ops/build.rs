//! With the `cuda` feature, compiles `src/kernels.cu` to PTX with nvcc (from `CUDA_ROOT`, or
//! the PATH; `scripts/cuda-toolchain.sh` provides both) for `CUDA_COMPUTE_CAP` (default 90).
//! Without the feature nothing is compiled and no CUDA toolkit is needed.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/kernels.cu");
    println!("cargo::rerun-if-changed=src/attention.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    println!("cargo::rerun-if-env-changed=CUDA_ROOT");
    println!("cargo::rustc-check-cfg=cfg(bf16_wmma)");
    if env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let nvcc = env::var_os("CUDA_ROOT")
        .map(|root| PathBuf::from(root).join("bin").join("nvcc"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("nvcc"));
    let cap = env::var("CUDA_COMPUTE_CAP").unwrap_or_else(|_| "90".into());
    let cap = cap.trim().trim_start_matches("sm_").to_string();
    // the bf16 attention kernel uses WMMA bf16 fragments (sm_80 and later)
    if cap.parse::<u32>().is_ok_and(|c| c >= 80) {
        println!("cargo::rustc-cfg=bf16_wmma");
    }
    for (source, ptx) in [
        ("src/kernels.cu", "fused_ops.ptx"),
        ("src/attention.cu", "fused_attention.ptx"),
    ] {
        let status = Command::new(&nvcc)
            .args(["-ptx", "-O3", "-std=c++17"])
            .arg(format!("-arch=sm_{cap}"))
            .arg(source)
            .arg("-o")
            .arg(out.join(ptx))
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "the cuda feature needs nvcc ({}): {e}; run scripts/cuda-toolchain.sh and \
                     source .cuda/env.sh",
                    nvcc.display()
                )
            });
        assert!(status.success(), "nvcc failed on {source}");
    }
}

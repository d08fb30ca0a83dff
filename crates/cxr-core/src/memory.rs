//! Keeping freed host memory for reuse in long CPU jobs.
//!
//! A training step allocates and frees the same large tensors every step (a `[208, 65536]`
//! f32 logit matrix is 54 MB), and so does a batched forward (a RAD-DINO MLP activation at
//! batch 4 is `[5480, 3072]`, 67 MB, in each of 12 layers). glibc serves allocations above
//! its mmap threshold with fresh `mmap`s and returns them on free, so every step faults every
//! page of every large tensor in again: a profile of the DINO objective on the CPU spends
//! about 40% of its time in the kernel's page-fault path. Telling glibc to serve everything
//! from its heap and never trim it makes freed memory reusable at no cost, as PyTorch's and
//! most tensor libraries' caching allocators do on the GPU. Binaries (training loops,
//! benchmarks, examples) opt in once at start; a library never changes the process's
//! allocator on its own.

/// Serves large allocations from glibc's heap instead of `mmap` and never trims the heap, so
/// freed tensors' pages are reused without faulting them in again (`mallopt(M_MMAP_MAX, 0)`
/// and `mallopt(M_TRIM_THRESHOLD, -1)`, the `GLIBC_TUNABLES` `glibc.malloc.mmap_max=0` /
/// `trim_threshold` settings), and keeps one arena for all threads (`M_ARENA_MAX` 1,
/// `glibc.malloc.arena_max=1`). Returns whether the settings were applied: `false` off
/// Linux-glibc, where the system allocator is left as it is.
///
/// One arena, because glibc otherwise gives the rayon workers arenas of their own, each
/// keeping the memory freed into it: the CPU DINOv2 step then peaked anywhere between 1.4 and
/// 2.0 GB from run to run of the same binary, and spent up to 3× the kernel time.
/// With one arena it peaked at 1.4 GB every time and ran 0.93× the wall time
/// (`docs/performance.md`). Tensor allocations are few and large, so threads seldom contend
/// for the one arena's lock.
///
/// The price is resident memory: the process keeps its peak heap for its lifetime, which is
/// what a long training or benchmark run wants.
pub fn retain_freed_heap_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's allocator parameters; it is safe to call at any
        // time (allocations made before keep working under either policy).
        // glibc reads the trim threshold as a size_t, so -1 is "never"; i32::MAX would still
        // trim a freed top above 2 GB, and the CPU DINO objective's heap grows to 4.2 GB
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, -1) == 1
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn settings_apply_on_linux_glibc() {
        let applied = super::retain_freed_heap_memory();
        assert_eq!(
            applied,
            cfg!(all(target_os = "linux", target_env = "gnu")),
            "mallopt should accept all three settings on glibc"
        );
        // allocations still work afterwards, large ones included, and from other threads
        let v = vec![1u8; 64 << 20];
        assert_eq!(v.iter().map(|&b| b as usize).sum::<usize>(), 64 << 20);
        let sums: Vec<usize> = (0..4)
            .map(|i| {
                std::thread::spawn(move || vec![i as u8; 8 << 20].iter().map(|&b| b as usize).sum())
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(sums, (0..4).map(|i| i * (8 << 20)).collect::<Vec<_>>());
    }
}

//! Launching the kernels of `kernels.cu` (compiled to PTX by build.rs) on candle's CUDA
//! storage. Every launch is followed by candle's error mapping; inputs must be contiguous.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDevice, WrapErr};
use candle_core::{bail, CudaStorage, DType, Layout, Result};
use half::bf16;

use crate::teacher::SinkhornKnopp;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_ops.ptx"));
const MODULE: &str = "cxr_fused_ops";
const BLOCK: u32 = 256;

fn launch_cfg(blocks: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (blocks.max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Blocks for a grid-stride loop over `n` elements: enough to fill the GPU, no more.
fn stride_blocks(n: usize) -> u32 {
    n.div_ceil(BLOCK as usize).clamp(1, 132 * 16) as u32
}

fn view<'a, T: candle_core::cuda_backend::CudaDType>(
    s: &'a CudaStorage,
    l: &Layout,
    what: &str,
) -> Result<CudaView<'a, T>> {
    let Some((a, b)) = l.contiguous_offsets() else {
        bail!(
            "fused-ops: {what} must be contiguous (shape {:?})",
            l.dims()
        );
    };
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

fn wrap<T: candle_core::cuda_backend::CudaDType>(
    slice: CudaSlice<T>,
    dev: &CudaDevice,
) -> CudaStorage {
    CudaStorage::wrap_cuda_slice(slice, dev.clone())
}

/// Layer-norm forward (`ln_fwd`) or backward (`ln_bwd`) over rows of `d`: operands
/// `(x, w, third)` where third is the bias or the output gradient.
pub(crate) fn layer_norm_rows(
    kernel: &str,
    s: [(&CudaStorage, &Layout); 3],
    d: usize,
    eps: f32,
) -> Result<CudaStorage> {
    let dev = s[0].0.device();
    let n = s[0].1.shape().elem_count();
    let rows = n / d;
    // a warp per row, 8 rows per block
    let cfg = launch_cfg(rows.div_ceil(8) as u32);
    // groups of 4 elements when every operand starts 4-element aligned and rows are too
    let aligned = s.iter().all(|(_, l)| l.start_offset() % 4 == 0);
    let vec4 = i32::from(d % 4 == 0 && aligned);
    let (rows, d) = (rows as i32, d as i32);
    macro_rules! launch {
        ($t:ty, $suffix:literal) => {{
            let x = view::<$t>(s[0].0, s[0].1, "x")?;
            let w = view::<$t>(s[1].0, s[1].1, "w")?;
            let c = view::<$t>(s[2].0, s[2].1, "operand")?;
            let out = unsafe { dev.alloc::<$t>(n)? };
            let f = dev.get_or_load_custom_func(&format!("{kernel}_{}", $suffix), MODULE, PTX)?;
            let mut b = f.builder();
            b.arg(&x)
                .arg(&w)
                .arg(&c)
                .arg(&out)
                .arg(&rows)
                .arg(&d)
                .arg(&eps)
                .arg(&vec4);
            // SAFETY: a warp per row reads `rows · d` elements of x/c and d of w, writes `out`;
            // the grouped accesses run only on 4-aligned offsets and widths.
            unsafe { b.launch(cfg) }.w()?;
            Ok(wrap(out, dev))
        }};
    }
    match s[0].0.dtype() {
        DType::F32 => launch!(f32, "f32"),
        DType::BF16 => launch!(bf16, "bf16"),
        other => bail!("fused layer norm on CUDA supports f32 and bf16, got {other:?}"),
    }
}

/// Column partial sums `[2, chunks, d]` of `dy · x̂` (row 0) and `dy` (row 1) over chunks of
/// rows; the caller sums over the chunks.
pub(crate) fn layer_norm_param_partials(
    sx: &CudaStorage,
    lx: &Layout,
    sdy: &CudaStorage,
    ldy: &Layout,
    d: usize,
    eps: f32,
) -> Result<(CudaStorage, usize)> {
    let dev = sx.device();
    let rows = lx.shape().elem_count() / d;
    let rows_per_chunk = rows.div_ceil(512).max(1);
    let chunks = rows.div_ceil(rows_per_chunk).max(1);
    let mean = dev.alloc_zeros::<f32>(rows.max(1))?;
    let rstd = dev.alloc_zeros::<f32>(rows.max(1))?;
    let part = dev.alloc_zeros::<f32>(2 * chunks * d)?;
    let suffix = match sx.dtype() {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        other => bail!("fused layer norm on CUDA supports f32 and bf16, got {other:?}"),
    };
    let (r, di, rpc) = (rows as i32, d as i32, rows_per_chunk as i32);
    let stats = dev.get_or_load_custom_func(&format!("ln_stats_{suffix}"), MODULE, PTX)?;
    let partials =
        dev.get_or_load_custom_func(&format!("ln_param_partials_{suffix}"), MODULE, PTX)?;
    let grid = LaunchConfig {
        grid_dim: (d.div_ceil(BLOCK as usize) as u32, chunks as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    macro_rules! launch {
        ($t:ty) => {{
            let x = view::<$t>(sx, lx, "x")?;
            let dy = view::<$t>(sdy, ldy, "dy")?;
            let mut b = stats.builder();
            b.arg(&x).arg(&mean).arg(&rstd).arg(&r).arg(&di).arg(&eps);
            // SAFETY: a warp per row of d elements; writes mean/rstd[row].
            unsafe { b.launch(launch_cfg(rows.div_ceil(8) as u32)) }.w()?;
            let mut b = partials.builder();
            b.arg(&x)
                .arg(&dy)
                .arg(&mean)
                .arg(&rstd)
                .arg(&part)
                .arg(&r)
                .arg(&di)
                .arg(&rpc);
            // SAFETY: one thread per (column, chunk); writes part[.., chunk, column].
            unsafe { b.launch(grid) }.w()?;
        }};
    }
    match sx.dtype() {
        DType::F32 => launch!(f32),
        _ => launch!(bf16),
    }
    Ok((wrap(part, dev), chunks))
}

/// Bilinear resize forward (`backward = false`: `s` is the input) or backward (`s` is the
/// output gradient, the result the zero-initialised input gradient).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resize(
    kernel: &str,
    s: &CudaStorage,
    l: &Layout,
    planes: usize,
    input: (usize, usize),
    output: (usize, usize),
    align_corners: bool,
    backward: bool,
) -> Result<CudaStorage> {
    let dev = s.device();
    let src = view::<f32>(s, l, "resize operand")?;
    let n_out = planes * output.0 * output.1;
    let out = if backward {
        dev.alloc_zeros::<f32>(planes * input.0 * input.1)?
    } else {
        unsafe { dev.alloc::<f32>(n_out)? }
    };
    let f = dev.get_or_load_custom_func(kernel, MODULE, PTX)?;
    let dims = [
        planes as i32,
        input.0 as i32,
        input.1 as i32,
        output.0 as i32,
        output.1 as i32,
        align_corners as i32,
    ];
    let mut b = f.builder();
    b.arg(&src).arg(&out);
    for v in &dims {
        b.arg(v);
    }
    // SAFETY: one grid-stride pass over the `n_out` output positions; indices stay in range.
    unsafe { b.launch(launch_cfg(stride_blocks(n_out))) }.w()?;
    Ok(wrap(out, dev))
}

pub(crate) fn center_softmax(
    s1: &CudaStorage,
    l1: &Layout,
    s2: &CudaStorage,
    l2: &Layout,
    n: usize,
    k: usize,
    inv_temp: f32,
) -> Result<CudaStorage> {
    let dev = s1.device();
    let (t, c) = (
        view::<f32>(s1, l1, "logits")?,
        view::<f32>(s2, l2, "center")?,
    );
    let out = unsafe { dev.alloc::<f32>(n * k)? };
    let f = dev.get_or_load_custom_func("center_softmax_f32", MODULE, PTX)?;
    let k = k as i32;
    let mut b = f.builder();
    b.arg(&t).arg(&c).arg(&out).arg(&k).arg(&inv_temp);
    // SAFETY: one block per row of k elements.
    unsafe { b.launch(launch_cfg(n as u32)) }.w()?;
    Ok(wrap(out, dev))
}

/// Two-stage reduction of `partial` (one value per block) into `out[0]`; op 0 = max, 1 = sum.
fn finish(
    dev: &CudaDevice,
    partial: &CudaSlice<f32>,
    count: usize,
    op: i32,
    out: &CudaSlice<f32>,
) -> Result<()> {
    let f = dev.get_or_load_custom_func("sk_finish", MODULE, PTX)?;
    let count = count as i32;
    let mut b = f.builder();
    b.arg(partial).arg(&count).arg(&op).arg(out);
    // SAFETY: one block reads `count` partials, thread 0 writes out[0].
    unsafe { b.launch(launch_cfg(1)) }.w()?;
    Ok(())
}

pub(crate) fn sinkhorn(
    s: &CudaStorage,
    l: &Layout,
    n: usize,
    k: usize,
    op: &SinkhornKnopp,
) -> Result<CudaStorage> {
    let dev = s.device();
    let t = view::<f32>(s, l, "logits")?;
    let total_len = n * k;
    let blocks = stride_blocks(total_len);
    let cfg = launch_cfg(blocks);
    let partial = dev.alloc_zeros::<f32>(blocks as usize)?;
    let max = dev.alloc_zeros::<f32>(1)?;
    let total = dev.alloc_zeros::<f32>(1)?;
    let q = unsafe { dev.alloc::<f32>(total_len)? };
    let n_el = total_len;

    let f = dev.get_or_load_custom_func("sk_partial_max", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&t).arg(&n_el).arg(&partial);
    // SAFETY: grid-stride over n·k logits, one partial per block.
    unsafe { b.launch(cfg) }.w()?;
    finish(dev, &partial, blocks as usize, 0, &max)?;

    let f = dev.get_or_load_custom_func("sk_exp", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&t)
        .arg(&q)
        .arg(&n_el)
        .arg(&max)
        .arg(&op.inv_temp)
        .arg(&partial);
    // SAFETY: as above; writes q.
    unsafe { b.launch(cfg) }.w()?;
    finish(dev, &partial, blocks as usize, 1, &total)?;

    let f = dev.get_or_load_custom_func("sk_scale", MODULE, PTX)?;
    let mut b = f.builder();
    b.arg(&q).arg(&n_el).arg(&total);
    // SAFETY: grid-stride in-place scale of q.
    unsafe { b.launch(cfg) }.w()?;

    let col = dev.alloc_zeros::<f32>(k)?;
    let (rows, kk) = (n as i32, k as i32);
    for it in 0..op.iterations {
        let f = dev.get_or_load_custom_func("sk_col_sum", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&q).arg(&rows).arg(&kk).arg(&col);
        // SAFETY: one thread per column c < k.
        unsafe { b.launch(launch_cfg(k.div_ceil(BLOCK as usize) as u32)) }.w()?;
        let out_scale = if it + 1 == op.iterations {
            op.n_samples
        } else {
            1.0
        };
        let f = dev.get_or_load_custom_func("sk_row_norm", MODULE, PTX)?;
        let mut b = f.builder();
        b.arg(&q)
            .arg(&kk)
            .arg(&col)
            .arg(&op.n_samples)
            .arg(&out_scale);
        // SAFETY: one block per row of q.
        unsafe { b.launch(launch_cfg(n as u32)) }.w()?;
    }
    let storage = wrap(q, dev);
    if op.iterations == 0 {
        // Q · B after the global normalisation alone
        return storage.affine(&Layout::contiguous((n, k)), op.n_samples as f64, 0.0);
    }
    Ok(storage)
}

/// An epilogue kernel (`bias_gelu`, `bias_scale_residual`, `bias_add`, `scale_columns`): rows
/// of `d` elements spread over whole warps (grid-stride over the rows), eight or four elements
/// per access where widths and offsets allow.
pub(crate) fn epilogue(
    kernel: &str,
    s: [(&CudaStorage, &Layout); 3],
    d: usize,
) -> Result<CudaStorage> {
    let dev = s[0].0.device();
    let n = s[0].1.shape().elem_count();
    let rows = n / d.max(1);
    // elements per access: the widest that divides the width and every offset, with 8 for
    // bf16 only (16-byte accesses; for f32 the 8-wide form measured 2.5x slower on the H200,
    // float4 already being 16 bytes)
    let widths: &[usize] = match s[0].0.dtype() {
        DType::BF16 => &[8, 4],
        _ => &[4],
    };
    let vec: i32 = widths
        .iter()
        .copied()
        .find(|&w| d % w == 0 && s.iter().all(|(_, l)| l.start_offset() % w == 0))
        .map_or(1, |w| w as i32);
    // threads along a row: its accesses rounded up to whole warps (a 3072-wide bf16 row is
    // 384 threads, all busy), and as many rows a block as fit 256 threads
    let per_row = d.div_ceil(vec as usize).next_multiple_of(32).min(1024);
    let rows_per_block = (BLOCK as usize / per_row).max(1);
    let cfg = LaunchConfig {
        grid_dim: (
            rows.div_ceil(rows_per_block).clamp(1, 132 * 16) as u32,
            1,
            1,
        ),
        block_dim: (per_row as u32, rows_per_block as u32, 1),
        shared_mem_bytes: 0,
    };
    macro_rules! launch {
        ($t:ty, $suffix:literal) => {{
            let a = view::<$t>(s[0].0, s[0].1, "branch")?;
            let p = view::<$t>(s[1].0, s[1].1, "per-channel operand")?;
            let r = view::<$t>(s[2].0, s[2].1, "residual")?;
            let out = unsafe { dev.alloc::<$t>(n)? };
            let f = dev.get_or_load_custom_func(&format!("{kernel}_{}", $suffix), MODULE, PTX)?;
            let (rows, d) = (rows as u64, d as i32);
            let mut b = f.builder();
            b.arg(&a)
                .arg(&p)
                .arg(&r)
                .arg(&out)
                .arg(&rows)
                .arg(&d)
                .arg(&vec);
            // SAFETY: grid-stride over the rows of a/r/out; p is read at columns < 2d; the
            // vectorised paths run only on offsets and widths that are multiples of `vec`.
            unsafe { b.launch(cfg) }.w()?;
            Ok(wrap(out, dev))
        }};
    }
    match s[0].0.dtype() {
        DType::F32 => launch!(f32, "f32"),
        DType::BF16 => launch!(bf16, "bf16"),
        other => bail!("fused epilogue on CUDA supports f32 and bf16, got {other:?}"),
    }
}

const ATTENTION_PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/fused_attention.ptx"));
const ATTENTION_MODULE: &str = "cxr_fused_attention";
/// Dynamic shared memory of the attention kernels (see the end of attention.cu).
const ATTENTION_SMEM_F32: u32 = 4 * 64 * 68 * 4;
const ATTENTION_SMEM_BF16_WMMA: u32 = 4 * 64 * 72 * 2 + 2 * 4 * 16 * 68 * 4;
/// The mma kernels: a q tile of 16 rows a warp, double-buffered 64-key k and v tiles.
const fn attention_smem_bf16_mma(warps: u32) -> u32 {
    (16 * warps + 2 * 64 + 2 * 64) * 72 * 2
}

/// Flash-style attention over `qkv` `[B, N, 3, H, 64]` with bias `[3, H, 64]`: one block per
/// (query tile, head, sample), output `[B, N, H, 64]`.
pub(crate) fn attention(
    (sq, lq): (&CudaStorage, &Layout),
    (sb, lb): (&CudaStorage, &Layout),
    b: usize,
    n: usize,
    op: &crate::attention::FusedAttention,
    bf16_kernel: crate::attention::Bf16Kernel,
) -> Result<CudaStorage> {
    use crate::attention::Bf16Kernel;
    use candle_core::cuda_backend::cudarc::driver::sys::CUfunction_attribute;
    let dev = sq.device();
    let (heads, scale) = (op.heads, op.scale);
    let len = b * n * heads * 64;
    // (kernel, threads, query rows a block, shared memory)
    let (kernel, threads, rows, smem) = match (sq.dtype(), bf16_kernel) {
        (DType::F32, _) => ("attn_fwd_f32", 256, 64, ATTENTION_SMEM_F32),
        (DType::BF16, Bf16Kernel::Wmma) => ("attn_fwd_bf16", 128, 64, ATTENTION_SMEM_BF16_WMMA),
        (DType::BF16, Bf16Kernel::Mma) => {
            ("attn_fwd_bf16_mma", 128, 64, attention_smem_bf16_mma(4))
        }
        (DType::BF16, _) => ("attn_fwd_bf16_mma128", 256, 128, attention_smem_bf16_mma(8)),
        (other, _) => bail!("fused attention on CUDA supports f32 and bf16, got {other:?}"),
    };
    let f = dev.get_or_load_custom_func(kernel, ATTENTION_MODULE, ATTENTION_PTX)?;
    // more than the 48 KiB a kernel gets without asking
    f.set_attribute(
        CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
        smem as i32,
    )
    .w()?;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(rows) as u32, heads as u32, b as u32),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let (n, h) = (n as i32, heads as i32);
    macro_rules! launch {
        ($t:ty) => {{
            let qkv = view::<$t>(sq, lq, "qkv")?;
            let bias = view::<$t>(sb, lb, "qkv bias")?;
            let out = unsafe { dev.alloc::<$t>(len)? };
            let mut bl = f.builder();
            bl.arg(&qkv)
                .arg(&bias)
                .arg(&out)
                .arg(&n)
                .arg(&h)
                .arg(&scale);
            // SAFETY: each block reads its sample's qkv rows (bounded by n) and writes its own
            // 64 query rows of one head.
            unsafe { bl.launch(cfg) }.w()?;
            Ok(wrap(out, dev))
        }};
    }
    match sq.dtype() {
        DType::F32 => launch!(f32),
        _ => launch!(bf16),
    }
}

/// Sets the release threshold of GPU `ordinal`'s default memory pool to "never": memory
/// freed by candle's stream-ordered allocations stays in the pool for the next allocation
/// instead of going back to the driver at every synchronisation (CUDA's default threshold is
/// 0), as PyTorch's caching allocator keeps its blocks.
pub(crate) fn retain_pool_memory(ordinal: usize) -> Result<()> {
    use candle_core::cuda_backend::cudarc::driver::sys;
    let mut dev: sys::CUdevice = 0;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    let mut threshold = u64::MAX;
    // SAFETY: plain driver queries/attribute writes with valid out-pointers; candle has
    // initialised the driver when a CUDA device exists.
    unsafe {
        sys::cuDeviceGet(&mut dev, ordinal as i32).result().w()?;
        sys::cuDeviceGetDefaultMemPool(&mut pool, dev)
            .result()
            .w()?;
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
            (&mut threshold as *mut u64).cast(),
        )
        .result()
        .w()?;
    }
    Ok(())
}

/// One in-place optimizer update (`optim_update` in kernels.cu) of `dst` from `a` and `b`
/// (contiguous, same dtype and length; see optim.rs).
pub(crate) fn optim_update(
    (sd, ld): (&mut CudaStorage, &Layout),
    (sa, la): (&CudaStorage, &Layout),
    (sb, lb): (&CudaStorage, &Layout),
    kind: i32,
    c: [f32; 4],
) -> Result<()> {
    let dev = sd.device().clone();
    let Some((d0, d1)) = ld.contiguous_offsets() else {
        bail!("optimizer update: destination must be contiguous");
    };
    let n = d1 - d0;
    let cfg = launch_cfg(stride_blocks(n));
    macro_rules! launch {
        ($t:ty, $suffix:literal) => {{
            let a = view::<$t>(sa, la, "operand")?;
            let b = view::<$t>(sb, lb, "second operand")?;
            if a.len() != n || b.len() != n {
                bail!(
                    "optimizer update: operands of {} and {} elements for {n}",
                    a.len(),
                    b.len()
                );
            }
            let f = dev.get_or_load_custom_func(concat!("optim_update_", $suffix), MODULE, PTX)?;
            let mut dst = sd.as_cuda_slice_mut::<$t>()?.slice_mut(d0..d1);
            let mut bl = f.builder();
            bl.arg(&mut dst)
                .arg(&a)
                .arg(&b)
                .arg(&n)
                .arg(&kind)
                .arg(&c[0])
                .arg(&c[1])
                .arg(&c[2])
                .arg(&c[3]);
            // SAFETY: grid-stride over the n elements of dst, a and b (lengths checked above).
            unsafe { bl.launch(cfg) }.w()?;
            Ok(())
        }};
    }
    match sa.dtype() {
        DType::F32 => launch!(f32, "f32"),
        DType::BF16 => launch!(bf16, "bf16"),
        other => bail!("optimizer update on CUDA supports f32 and bf16, got {other:?}"),
    }
}

/// `Σ_rows x` of the contiguous `rows × cols` x as `[cols]` in x's dtype: column partial sums
/// over chunks of rows (coalesced along the rows), then the same kernel over the partials.
pub(crate) fn column_sum(
    s: &CudaStorage,
    l: &Layout,
    rows: usize,
    cols: usize,
) -> Result<CudaStorage> {
    let dev = s.device();
    // enough chunks to fill the GPU, at least 64 rows each
    let chunks = (rows / 64).clamp(1, 256);
    let rows_per_chunk = rows.div_ceil(chunks).max(1);
    let chunks = rows.div_ceil(rows_per_chunk).max(1);
    let part = dev.alloc_zeros::<f32>(chunks * cols)?;
    let out = dev.alloc_zeros::<f32>(cols)?;
    let grid = |y: usize| LaunchConfig {
        grid_dim: (cols.div_ceil(BLOCK as usize) as u32, y as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    };
    let (r, c, rpc) = (rows as i32, cols as i32, rows_per_chunk as i32);
    macro_rules! first_pass {
        ($t:ty, $suffix:literal) => {{
            let x = view::<$t>(s, l, "x")?;
            let f =
                dev.get_or_load_custom_func(concat!("column_partials_", $suffix), MODULE, PTX)?;
            let mut b = f.builder();
            b.arg(&x).arg(&part).arg(&r).arg(&c).arg(&rpc);
            // SAFETY: thread (column, chunk) reads its column over the chunk's rows (< rows)
            // and writes part[chunk, column].
            unsafe { b.launch(grid(chunks)) }.w()?;
        }};
    }
    match s.dtype() {
        DType::F32 => first_pass!(f32, "f32"),
        DType::BF16 => first_pass!(bf16, "bf16"),
        other => bail!("column sum on CUDA supports f32 and bf16, got {other:?}"),
    }
    let f = dev.get_or_load_custom_func("column_partials_f32", MODULE, PTX)?;
    let (nc, one) = (chunks as i32, chunks as i32);
    let mut b = f.builder();
    b.arg(&part).arg(&out).arg(&nc).arg(&c).arg(&one);
    // SAFETY: as above, over the chunks × cols partials with a single chunk.
    unsafe { b.launch(grid(1)) }.w()?;
    let sum = wrap(out, dev);
    match s.dtype() {
        DType::F32 => Ok(sum),
        dtype => sum.to_dtype(&Layout::contiguous(cols), dtype),
    }
}

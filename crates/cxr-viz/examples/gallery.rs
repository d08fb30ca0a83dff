//! A picture gallery of what an encoder learned, on cxr-mini: per-head CLS attention (with
//! DINO's top-mass cut), DINOv2-style patch-feature PCA, mutual-nearest-neighbour patch matches
//! between scans of different patients, and PCA / exact t-SNE maps of every image's embedding
//! coloured by a label column. Writes `index.md` and PNGs (plus SVGs of the maps).
//!
//! `cargo run --release --example gallery -- --help`
//!
//! Any encoder folder works (DINOv2, DaViT, MI2); the attention pictures need a ViT's CLS
//! attention and are skipped for DaViT. With the default demo model (a 112-px ViT-tiny trained
//! for 450 DINOv2 steps on 465 images) expect noisy pictures: heads that attend to a few
//! patches at the image border rather than to anatomy, PCA colours that track intensity, few
//! meaningful matches and embedding maps with little label structure. About 3 s on 2 cores.
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, ValueEnum};
use cxr_core::ranges::at_least_one;
use cxr_core::Encoder;
use cxr_data::processor::ResizeTarget;
use cxr_data::{decode_file, DecodeOptions, ImageProcessor, Manifest, ManifestSpec, Record, Split};
use cxr_viz::attention::{cls_attention_maps, top_mass_mask};
use cxr_viz::correspondence::mutual_nearest_neighbours;
use cxr_viz::embedding_map::{pca_2d, tsne, TsneOptions};
use cxr_viz::features::{image_features, ImageFeatures};
use cxr_viz::pca::{patch_pca_rgb, Background, PatchPcaOptions};
use cxr_viz::render::{
    gray_to_rgb, overlay_heatmap, patch_rgb_image, save, scatter, side_by_side_matches, tile,
    upscale_gray, Interp, OverlayOptions,
};
use ndarray::Array2;
use vit_backbone::{encoder_kind, open_encoder, Dinov2Model, EncoderKind};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Side {
    /// The side of the PC1 threshold with fewer patches is background.
    Smaller,
    /// Patches above the threshold are background.
    Above,
    /// Patches below the threshold are background.
    Below,
}

#[derive(Parser, Debug)]
#[command(
    about = "Attention maps, patch-feature PCA, patch correspondences and embedding maps of an encoder on cxr-mini",
    long_about = "Writes a small gallery (index.md + PNG/SVG) of what an encoder learned:\n\
    1. CLS self-attention per head of the last layer (or --layer), overlaid on the input, and the\n   \
       head-mean cut to the smallest patch set holding --mass of the attention (as DINO does);\n\
    2. patch-feature PCA: fit, drop the background side of PC1, refit on the foreground, first\n   \
       three components as RGB (jointly over the picked images, and per image);\n\
    3. mutual nearest-neighbour patch matches (cosine) between scans of different patients;\n\
    4. PCA and exact t-SNE maps of every image's pooled embedding, coloured by --color-by.\n\
    Images are shown as the encoder sees them (after resize and centre crop)."
)]
struct Args {
    /// Encoder folder: Hugging Face DINOv2 (config.json, model.safetensors,
    /// preprocessor_config.json), or DaViT / MI2 (no attention pictures).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/cxr-dino-vit-tiny"))]
    model: PathBuf,
    /// The cxr-mini data pack (labels.csv, images/). Default: $CXR_SHARED/data/cxr-mini, else
    /// shared/data/cxr-mini beside the repository checkout (or beside its worktree folder).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Output directory.
    #[arg(long, default_value = "out/gallery")]
    out: PathBuf,
    /// Input side in pixels (resize shortest edge + centre crop); a multiple of the patch size.
    /// Default: the model's own preprocessing. Larger inputs give finer patch grids (position
    /// embeddings are interpolated).
    #[arg(long, value_parser = at_least_one::<usize>)]
    resolution: Option<usize>,
    /// Image ids (labels.csv `id`) for the attention, PCA and match pictures; default: the
    /// first test-split images of distinct patients, alternating PA and AP.
    #[arg(long, value_delimiter = ',')]
    images: Vec<String>,
    /// How many images to pick when --images is not given.
    #[arg(long, default_value_t = 4, value_parser = at_least_one::<usize>)]
    n_images: usize,
    /// Attention layer (0-based block); default the last.
    #[arg(long)]
    layer: Option<usize>,
    /// Attention mass kept by the top-mass cut.
    #[arg(long, default_value_t = 0.6)]
    mass: f64,
    /// Background threshold on min-max-scaled PC1; a negative value turns background removal off.
    #[arg(long, default_value_t = 0.5)]
    pca_threshold: f64,
    /// Which side of the PC1 threshold is background.
    #[arg(long, value_enum, default_value_t = Side::Smaller)]
    background: Side,
    /// Strongest mutual-nearest-neighbour matches drawn per pair.
    #[arg(long, default_value_t = 20, value_parser = at_least_one::<usize>)]
    matches: usize,
    /// labels.csv columns that colour the embedding maps.
    #[arg(long, value_delimiter = ',', default_value = "sex,view")]
    color_by: Vec<String>,
    /// At most this many images in the embedding maps (0: all).
    #[arg(long, default_value_t = 0)]
    max_embed: usize,
    /// t-SNE perplexity.
    #[arg(long, default_value_t = 30.0)]
    perplexity: f64,
    /// t-SNE steps (at least 250).
    #[arg(long, default_value_t = 1000, value_parser = at_least_one::<usize>)]
    tsne_iter: usize,
    /// Batch size of the embedding pass.
    #[arg(long, default_value_t = 32, value_parser = at_least_one::<usize>)]
    batch: usize,
}

/// One picked image: what the encoder sees, as 8-bit gray and as its input tensor.
struct Picked {
    id: String,
    meta: String,
    plane: image::GrayImage,
    pixels: Tensor,
}

fn record_id(r: &Record) -> String {
    r.image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn load(
    processor: &ImageProcessor,
    r: &Record,
    device: &Device,
) -> anyhow::Result<(image::GrayImage, Tensor)> {
    let img = decode_file(&r.image, &DecodeOptions::default())?;
    let src = img.to_u8();
    let (plane, (h, w)) = processor.resize_and_crop_u8(&src, (img.height, img.width))?;
    let (values, (ph, pw)) = processor.apply_u8(&src, (img.height, img.width))?;
    let pixels = Tensor::from_vec(values, (3, ph, pw), device)?;
    let gray = image::GrayImage::from_raw(w as u32, h as u32, plane)
        .context("processed plane has the wrong length")?;
    Ok((gray, pixels))
}

fn pick_default(manifest: &Manifest, n: usize) -> Vec<usize> {
    let test = manifest.indices_in(Split::Test);
    let mut out: Vec<usize> = Vec::new();
    let mut patients: Vec<&str> = Vec::new();
    let views = ["PA", "AP"];
    // alternate views, one image per patient, in manifest order
    for round in 0..(2 * n) {
        if out.len() == n {
            break;
        }
        let want = views[round % 2];
        if let Some(&i) = test.iter().find(|&&i| {
            let r = &manifest.records[i];
            r.meta.get("view").map(String::as_str) == Some(want)
                && !patients.contains(&r.patient.as_str())
        }) {
            patients.push(manifest.records[i].patient.as_str());
            out.push(i);
        }
    }
    out
}

fn label_of(r: &Record, manifest: &Manifest, column: &str) -> Option<String> {
    if let Some(v) = r.meta.get(column) {
        return Some(if v.is_empty() {
            "missing".into()
        } else {
            v.clone()
        });
    }
    let i = manifest.label_index(column)?;
    Some(match r.labels[i] {
        Some(v) => format!("{v}"),
        None => "missing".into(),
    })
}

fn default_data() -> PathBuf {
    cxr_testkit::shared_dir().join("data/cxr-mini")
}

fn main() -> anyhow::Result<()> {
    // freed tensors are reused from the heap instead of faulted in afresh for every image
    cxr_core::retain_freed_heap_memory();
    let mut args = Args::parse();
    if args.pca_threshold.is_nan() {
        // NaN fails the `>= 0` test and would silently turn background removal off
        bail!("--pca-threshold is NaN: give a value in [0, 1], or a negative one for no background removal");
    }
    let data = args.data.take().unwrap_or_else(default_data);
    let device = Device::Cpu;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let started = std::time::Instant::now();

    // a ViT is kept as such for its attention; any other encoder only through the trait
    let kind = encoder_kind(&args.model)?;
    let (vit, other): (Option<Dinov2Model>, Option<Box<dyn Encoder>>) = match kind {
        EncoderKind::Dinov2 => (
            Some(Dinov2Model::from_dir(&args.model, DType::F32, &device)?),
            None,
        ),
        _ => (None, Some(open_encoder(&args.model, DType::F32, &device)?)),
    };
    let model: &dyn Encoder = match (&vit, &other) {
        (Some(m), _) => m,
        (None, Some(m)) => m.as_ref(),
        (None, None) => bail!("no encoder loaded from {}", args.model.display()),
    };
    let patch = model.feature_info().patch_stride;
    let pp = args.model.join("preprocessor_config.json");
    let mut processor = if pp.exists() {
        ImageProcessor::from_file(&pp)?
    } else {
        ImageProcessor::from_preprocessing(&model.preprocessing())
    };
    if let Some(res) = args.resolution {
        if res % patch != 0 {
            bail!("--resolution {res} is not a multiple of the patch size {patch}");
        }
        processor.size = ResizeTarget::ShortestEdge(res);
        processor.do_center_crop = true;
        processor.crop_size = (res, res);
    }
    let manifest = Manifest::from_csv(data.join("labels.csv"), &ManifestSpec::cxr_mini())?;
    let shape = match &vit {
        Some(m) => format!(
            "{} blocks, {} heads",
            m.config().num_hidden_layers,
            m.config().num_attention_heads
        ),
        None => format!("{} stages", model.feature_info().num_layers()),
    };
    println!(
        "model {} ({kind}, {shape}, patch {patch}); {} images in {}",
        args.model.display(),
        manifest.records.len(),
        data.display()
    );

    let chosen: Vec<usize> = if args.images.is_empty() {
        pick_default(&manifest, args.n_images)
    } else {
        args.images
            .iter()
            .map(|id| {
                manifest
                    .records
                    .iter()
                    .position(|r| &record_id(r) == id)
                    .ok_or_else(|| anyhow!("image id {id} is not in labels.csv"))
            })
            .collect::<anyhow::Result<_>>()?
    };
    if chosen.is_empty() {
        bail!("no images picked");
    }
    let mut picked = Vec::new();
    for &i in &chosen {
        let r = &manifest.records[i];
        let (plane, pixels) = load(&processor, r, &device)?;
        let meta = ["sex", "view"]
            .iter()
            .filter_map(|c| r.meta.get(*c).map(|v| format!("{c} {v}")))
            .collect::<Vec<_>>()
            .join(", ");
        picked.push(Picked {
            id: record_id(r),
            meta: format!("patient {}, {meta}", r.patient),
            plane,
            pixels,
        });
    }
    let batch = Tensor::stack(
        &picked.iter().map(|p| p.pixels.clone()).collect::<Vec<_>>(),
        0,
    )?;
    let (in_h, in_w) = (picked[0].plane.height(), picked[0].plane.width());
    // display at roughly 224 px or more
    let scale = 224u32.div_ceil(in_h.max(1)).max(1);
    let display: Vec<image::GrayImage> = picked
        .iter()
        .map(|p| upscale_gray(&p.plane, scale))
        .collect();

    let mut md = String::new();
    writeln!(md, "# Encoder gallery\n")?;
    writeln!(
        md,
        "Model `{}`, input {in_h}x{in_w} px (patch {patch}), shown at {}x. Data: cxr-mini (CC BY 3.0, Hannover Medical School). \
         Written by `cargo run --release --example gallery` (crate `cxr-viz`).\n",
        args.model.display(),
        scale
    )?;
    writeln!(md, "| # | image | metadata |\n|---|---|---|")?;
    for (k, p) in picked.iter().enumerate() {
        writeln!(md, "| {k} | `{}` | {} |", p.id, p.meta)?;
    }

    // 1. attention (a ViT's CLS attention; other encoders have none to show)
    if let Some(vit) = &vit {
        let maps = cls_attention_maps(vit, &batch, args.layer)?;
        let layer = args.layer.unwrap_or(vit.config().num_hidden_layers - 1);
        writeln!(
            md,
            "\n## CLS attention, block {layer}\n\nPer image: the input, then the CLS token's attention to the patches for each \
             head (inferno, min-max per map, bilinear between patch centres), the mean over heads, and the mean cut to the \
             smallest patch set holding {:.0}% of the attention (the rest dimmed), as in DINO. Attention extraction is \
             checked against transformers `output_attentions=True` (1e-5) in `crates/vit-backbone/tests/parity.rs`.\n",
            args.mass * 100.0
        )?;
        for (p, (map, base)) in picked.iter().zip(maps.iter().zip(&display)) {
            let plain = OverlayOptions::default();
            let mut tiles = vec![gray_to_rgb(base)];
            for head in &map.heads {
                tiles.push(overlay_heatmap(base, head, map.grid, &plain)?);
            }
            let mean = map.mean();
            tiles.push(overlay_heatmap(base, &mean, map.grid, &plain)?);
            let keep = top_mass_mask(&mean, args.mass)?;
            let kept = keep.iter().filter(|&&k| k).count();
            tiles.push(overlay_heatmap(
                base,
                &mean,
                map.grid,
                &OverlayOptions {
                    interp: Interp::Nearest,
                    mask: Some(keep),
                    ..plain
                },
            )?);
            let cols = tiles.len().min(8);
            let name = format!("attention_{}.png", p.id);
            save(&tile(&tiles, cols, 4)?, &args.out.join(&name))?;
            let mass_note = format!("top-mass cut keeps {kept} of {} patches", mean.len());
            writeln!(
                md,
                "![attention {}]({name})\n\n`{}`: {} heads; {mass_note}.\n",
                p.id,
                p.id,
                map.heads.len()
            )?;
            println!("attention: {name} ({mass_note})");
        }
    } else {
        writeln!(
            md,
            "\n## CLS attention\n\nSkipped: a {kind} encoder has no CLS token attention to show.\n"
        )?;
        println!("attention: skipped ({kind} has no CLS attention)");
    }

    // 2. patch-feature PCA
    let feats: Vec<ImageFeatures> = image_features(model, &batch)?;
    let opts = PatchPcaOptions {
        threshold: (args.pca_threshold >= 0.0).then_some(args.pca_threshold),
        background: match args.background {
            Side::Smaller => Background::Smaller,
            Side::Above => Background::Above,
            Side::Below => Background::Below,
        },
    };
    let views: Vec<_> = feats.iter().map(|f| (f.patches.view(), f.grid)).collect();
    let joint = patch_pca_rgb(&views, &opts)?;
    let (dh, dw) = (display[0].height() as usize, display[0].width() as usize);
    let mut row_in = Vec::new();
    let mut row_joint = Vec::new();
    let mut row_single = Vec::new();
    let mut single_ratios = Vec::new();
    for (k, base) in display.iter().enumerate() {
        row_in.push(gray_to_rgb(base));
        let im = &joint.images[k];
        row_joint.push(patch_rgb_image(
            &im.rgb,
            im.grid,
            (dh, dw),
            Some(&im.foreground),
        )?);
        let single = patch_pca_rgb(&views[k..k + 1], &opts)?;
        let s = &single.images[0];
        row_single.push(patch_rgb_image(
            &s.rgb,
            s.grid,
            (dh, dw),
            Some(&s.foreground),
        )?);
        single_ratios.push(single.foreground.explained_variance_ratio.to_vec());
    }
    let n = display.len();
    let mut all = row_in;
    all.extend(row_joint);
    all.extend(row_single);
    save(&tile(&all, n, 4)?, &args.out.join("pca.png"))?;
    let fg: usize = joint
        .images
        .iter()
        .map(|i| i.foreground.iter().filter(|&&f| f).count())
        .sum();
    let total: usize = joint.images.iter().map(|i| i.foreground.len()).sum();
    let ratio = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{:.1}%", 100.0 * r))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    writeln!(
        md,
        "## Patch-feature PCA\n\n![pca](pca.png)\n\nRow 1: inputs. Row 2: PCA fitted jointly over the {n} images \
         (DINOv2's recipe: fit on all patches, min-max PC1, background = {:?} side of {}, refit on the foreground, \
         components 1-3 as R/G/B, min-max per component; background black). Row 3: the same fitted per image.\n\n\
         Joint fit: {fg} of {total} patches foreground; PC1 of the first fit explains {}; the foreground fit's three \
         components explain {}. Per image: {}.\n",
        args.background,
        args.pca_threshold,
        ratio(joint.first.explained_variance_ratio.as_slice().unwrap_or(&[])),
        ratio(&joint.foreground.explained_variance_ratio.to_vec()),
        single_ratios.iter().map(|r| ratio(r)).collect::<Vec<_>>().join("; ")
    )?;
    println!("pca: pca.png ({fg}/{total} foreground patches)");

    // 3. correspondences between consecutive picked images (different patients)
    writeln!(
        md,
        "## Patch correspondences\n\nEach patch of the left scan is matched to its most cosine-similar patch of the \
         right scan (final patch tokens); only mutual nearest neighbours are kept and the {} strongest drawn \
         (brightest = most similar).\n",
        args.matches
    )?;
    for pair in (0..n)
        .collect::<Vec<_>>()
        .chunks(2)
        .filter(|c| c.len() == 2)
    {
        let (a, b) = (pair[0], pair[1]);
        let all =
            mutual_nearest_neighbours(feats[a].patches.view(), feats[b].patches.view(), None)?;
        let top: Vec<_> = all.iter().take(args.matches).copied().collect();
        let img = side_by_side_matches(
            &gray_to_rgb(&display[a]),
            &gray_to_rgb(&display[b]),
            feats[a].grid,
            feats[b].grid,
            &top,
            16,
        )?;
        let name = format!("matches_{}_{}.png", picked[a].id, picked[b].id);
        save(&img, &args.out.join(&name))?;
        let mean_sim = top.iter().map(|m| m.similarity).sum::<f64>() / top.len().max(1) as f64;
        writeln!(
            md,
            "![matches]({name})\n\n`{}` vs `{}`: {} mutual nearest neighbours of {} patches; the {} drawn have mean cosine {:.3}.\n",
            picked[a].id,
            picked[b].id,
            all.len(),
            feats[a].patches.nrows(),
            top.len(),
            mean_sim
        )?;
        println!("matches: {name} ({} mutual pairs)", all.len());
    }

    // 4. embedding maps
    let mut idx: Vec<usize> = (0..manifest.records.len()).collect();
    if args.max_embed > 0 {
        idx.truncate(args.max_embed);
    }
    let mut pooled: Vec<Vec<f64>> = Vec::with_capacity(idx.len());
    for chunk in idx.chunks(args.batch) {
        let mut px = Vec::with_capacity(chunk.len());
        for &i in chunk {
            px.push(load(&processor, &manifest.records[i], &device)?.1);
        }
        let f = image_features(model, &Tensor::stack(&px, 0)?)?;
        pooled.extend(f.into_iter().map(|f| f.pooled));
        print!("\rembeddings: {}/{}", pooled.len(), idx.len());
        std::io::Write::flush(&mut std::io::stdout())?;
    }
    println!();
    let d = pooled.first().map_or(0, Vec::len);
    let x = Array2::from_shape_vec((pooled.len(), d), pooled.into_iter().flatten().collect())?;
    let (p2, pca) = pca_2d(x.view())?;
    let t0 = std::time::Instant::now();
    let ts = tsne(
        x.view(),
        &TsneOptions {
            perplexity: args.perplexity,
            max_iter: args.tsne_iter,
            ..Default::default()
        },
    )?;
    let tsne_s = t0.elapsed().as_secs_f64();
    writeln!(
        md,
        "## Embedding maps\n\nPooled (CLS) embeddings of {} images. PCA: PC1/PC2 explain {}. Exact t-SNE (perplexity {}, \
         sklearn's exact schedule): KL {:.3} after {} steps ({tsne_s:.1} s). Note: in cxr-mini, `view` leaks through \
         the image size (data README), so clusters by view say little about the representation.\n",
        x.nrows(),
        ratio(pca.explained_variance_ratio.as_slice().unwrap_or(&[])),
        args.perplexity,
        ts.kl_divergence,
        ts.n_iter + 1
    )?;
    let to_points = |a: &Array2<f64>| -> Vec<(f64, f64)> {
        a.rows().into_iter().map(|r| (r[0], r[1])).collect()
    };
    for column in &args.color_by {
        let labels: Vec<String> = idx
            .iter()
            .map(|&i| label_of(&manifest.records[i], &manifest, column))
            .collect::<Option<_>>()
            .ok_or_else(|| anyhow!("--color-by {column}: no such column in labels.csv"))?;
        for (kind, title, pts, axes) in [
            ("pca", "PCA", to_points(&p2), ("PC1", "PC2")),
            (
                "tsne",
                "t-SNE",
                to_points(&ts.embedding),
                ("t-SNE 1", "t-SNE 2"),
            ),
        ] {
            for ext in ["png", "svg"] {
                let name = format!("embed_{kind}_{column}.{ext}");
                scatter(
                    &pts,
                    &labels,
                    &format!("{title} of {} embeddings, by {column}", labels.len()),
                    axes,
                    &args.out.join(&name),
                    (720, 540),
                )?;
            }
            writeln!(md, "![{kind} {column}](embed_{kind}_{column}.png)\n")?;
            println!("map: embed_{kind}_{column}.png/.svg");
        }
    }
    let index = args.out.join("index.md");
    std::fs::write(&index, md).with_context(|| format!("writing {}", index.display()))?;
    println!(
        "wrote {} in {:.1} s",
        index.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

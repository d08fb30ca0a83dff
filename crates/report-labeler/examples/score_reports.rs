//! Clinical F1 of generated reports against reference reports, with bootstrap CIs.
//!
//! ```text
//! cargo run --release --example score_reports -- \
//!     --generated gen.txt --reference ref.txt [--bootstrap 500 --seed 0]
//! ```
//!
//! Both files hold one report per blank-line-separated block, in the same order. Each
//! report is labelled with the 14 CheXpert observations; only a positive (1) label counts
//! as positive. Prints F1 per observation, macro- and micro-F1 over the 14 and over the 5
//! competition observations, each with a 95% percentile-bootstrap CI over report pairs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cxr_core::ranges::at_least_one;
use metrics::bootstrap::{BootstrapConfig, Interval};
use report_labeler::reports::read_reports;
use report_labeler::score::LabelF1State;
use report_labeler::{Labeler, Observation};

/// Clinical (CheXpert-label) F1 of generated vs reference reports, with bootstrap CIs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Generated reports, one per blank-line-separated block.
    #[arg(long)]
    generated: PathBuf,
    /// Reference reports, same order and count.
    #[arg(long)]
    reference: PathBuf,
    /// Bootstrap resamples for the 95% CIs.
    #[arg(long, default_value_t = 500, value_parser = at_least_one::<usize>)]
    bootstrap: usize,
    /// Bootstrap RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn show(i: &Interval) -> String {
    let e = i.estimate.map_or("-".into(), |e| format!("{e:.3}"));
    match i.ci {
        Some((lo, hi)) => format!("{e} [{lo:.3}, {hi:.3}]"),
        None => e,
    }
}

fn run(args: &Args) -> Result<(), report_labeler::LabelerError> {
    let generated = read_reports(&args.generated)?;
    let reference = read_reports(&args.reference)?;
    let mut state = LabelF1State::new();
    state.update_texts(&Labeler::new(), &generated, &reference)?;
    let cfg = BootstrapConfig {
        n_resamples: args.bootstrap,
        seed: args.seed,
        ..BootstrapConfig::default()
    };
    let s = state.compute_with_ci(&cfg)?;
    println!(
        "{} report pairs, F1 with 95% CI ({} resamples)",
        s.n_reports, args.bootstrap
    );
    for (o, i) in Observation::ALL.iter().zip(&s.per_observation) {
        println!("  {:<28} {}", o.name(), show(i));
    }
    println!("  {:<28} {}", "macro-F1-14", show(&s.macro_f1_14));
    println!("  {:<28} {}", "micro-F1-14", show(&s.micro_f1_14));
    println!("  {:<28} {}", "macro-F1-5", show(&s.macro_f1_5));
    println!("  {:<28} {}", "micro-F1-5", show(&s.micro_f1_5));
    Ok(())
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

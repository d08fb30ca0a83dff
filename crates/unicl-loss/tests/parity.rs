//! Values and gradients of each loss against the PyTorch references of `tests/gen.py`.
#![allow(clippy::unwrap_used)]

use crate::common;

use candle_core::DType;
use common::{assert_close, load, targets, DTYPES};
use unicl_loss::{LogitParams, LossKind};

const CASES: [&str; 4] = ["unique", "repeated", "mixed", "unnormalised"];

fn check(case: &str, kind: LossKind) {
    let fx = load(case);
    let targets = targets(&fx);
    let prefix = kind.build().name();
    for (dtype, tol) in DTYPES {
        let img = fx.var("img", dtype);
        let txt = fx.var("txt", dtype);
        let log_scale: f64 = fx.get("log_scale", DType::F64).to_scalar().unwrap();
        let bias: f64 = fx.get("bias", DType::F64).to_scalar().unwrap();
        let with_bias = kind == LossKind::Siglip;
        let params = LogitParams::new(
            log_scale,
            with_bias.then_some(bias),
            dtype,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let loss = kind
            .build()
            .loss(
                img.as_tensor(),
                txt.as_tensor(),
                &targets,
                &params.scale().unwrap(),
                params.bias(),
            )
            .unwrap();
        let at = |k: &str| format!("{case} {prefix} {dtype:?} {k}");
        let want = |k: &str| fx.get(&format!("{prefix}.{k}"), dtype);
        assert_close(&at("value"), &loss, &want("value"), tol);
        let grads = loss.backward().unwrap();
        assert_close(
            &at("grad img"),
            grads.get(img.as_tensor()).unwrap(),
            &want("grad_img"),
            tol,
        );
        assert_close(
            &at("grad txt"),
            grads.get(txt.as_tensor()).unwrap(),
            &want("grad_txt"),
            tol,
        );
        assert_close(
            &at("grad log_scale"),
            grads.get(params.log_scale().as_tensor()).unwrap(),
            &want("grad_log_scale"),
            tol,
        );
        assert_eq!(params.bias_var().is_some(), with_bias, "{}", at("bias"));
        if let Some(b) = params.bias_var() {
            assert_close(
                &at("grad bias"),
                grads.get(b.as_tensor()).unwrap(),
                &want("grad_bias"),
                tol,
            );
        }
    }
}

#[test]
fn unicl_matches_reference() {
    for case in CASES {
        check(case, LossKind::Unicl);
    }
}

#[test]
fn clip_matches_open_clip() {
    for case in CASES {
        check(case, LossKind::Clip);
    }
}

#[test]
fn siglip_matches_open_clip() {
    for case in CASES {
        check(case, LossKind::Siglip);
    }
}

#[test]
fn unicl_equals_clip_for_unique_labels() {
    assert!(targets(&load("unique")).all_unique());
    let params = LogitParams::unicl(DType::F64, &candle_core::Device::Cpu).unwrap();
    let scale = params.scale().unwrap();
    let value = |case: &str, k: LossKind| -> f64 {
        let fx = load(case);
        let (img, txt) = (fx.get("img", DType::F64), fx.get("txt", DType::F64));
        k.build()
            .loss(&img, &txt, &targets(&fx), &scale, None)
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    assert!((value("unique", LossKind::Unicl) - value("unique", LossKind::Clip)).abs() < 1e-12);
    // and differs once labels repeat
    let (unicl, clip) = (
        value("repeated", LossKind::Unicl),
        value("repeated", LossKind::Clip),
    );
    assert!((unicl - clip).abs() > 1e-3, "{unicl} vs {clip}");
}

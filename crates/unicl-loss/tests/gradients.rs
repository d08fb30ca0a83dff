//! One backward step gives every trainable tensor a finite, non-zero gradient, and the shape
//! checks reject bad inputs with a clear error.
#![allow(clippy::unwrap_used)]

use candle_core::{DType, Device, Tensor, Var};
use unicl_loss::{l2_normalize, BatchTargets, Error, LabelSet, LossKind};

use cxr_testkit::assert_finite_nonzero_gradient as finite_nonzero;

#[test]
fn every_var_gets_a_gradient() {
    let dev = Device::Cpu;
    let (n, d) = (6, 12);
    // raw encoder outputs, normalised in the graph as an encoder would
    let img = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, d), &dev).unwrap()).unwrap();
    let txt = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, d), &dev).unwrap()).unwrap();
    let targets = BatchTargets::builder()
        .push_label_set(&LabelSet::new([1]))
        .push_report()
        .push_label_set(&LabelSet::new([1]))
        .push_label_set(&LabelSet::new([]))
        .push_label_id(4)
        .push_report()
        .build();
    for kind in [LossKind::Unicl, LossKind::Clip, LossKind::Siglip] {
        let params = kind.init_params(DType::F32, &dev).unwrap();
        let loss = kind
            .build()
            .loss(
                &l2_normalize(img.as_tensor()).unwrap(),
                &l2_normalize(txt.as_tensor()).unwrap(),
                &targets,
                &params.scale().unwrap(),
                params.bias(),
            )
            .unwrap();
        assert!(loss.to_scalar::<f32>().unwrap().is_finite());
        let grads = loss.backward().unwrap();
        finite_nonzero("img", grads.get(img.as_tensor()).unwrap());
        finite_nonzero("txt", grads.get(txt.as_tensor()).unwrap());
        for v in params.vars() {
            finite_nonzero("logit param", grads.get(v.as_tensor()).unwrap());
        }
    }
}

#[test]
fn bad_inputs_are_rejected() {
    let dev = Device::Cpu;
    let a = Tensor::zeros((4, 8), DType::F32, &dev).unwrap();
    let b = Tensor::zeros((4, 7), DType::F32, &dev).unwrap();
    let s = Tensor::new(1f32, &dev).unwrap();
    let loss = LossKind::Unicl.build();
    let t4 = BatchTargets::unique(4);
    assert!(matches!(
        loss.loss(&a, &b, &t4, &s, None),
        Err(Error::BadInput { .. })
    ));
    assert!(matches!(
        loss.loss(&a, &a, &BatchTargets::unique(3), &s, None),
        Err(Error::Targets(_))
    ));
    let v = Tensor::zeros(2, DType::F32, &dev).unwrap();
    let e = loss.loss(&a, &a, &t4, &v, None).unwrap_err();
    assert!(e.to_string().contains("scale"), "{e}");
    let flat = Tensor::zeros(8, DType::F32, &dev).unwrap();
    assert!(loss.loss(&flat, &flat, &t4, &s, None).is_err());
}

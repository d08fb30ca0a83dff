#![allow(clippy::unwrap_used)]
//! Losses against PyTorch: values and gradients with respect to the logits.

use crate::common;

use candle_core::{Tensor, Var};
use common::{assert_close, fixture};
use seg_decoders::loss::{bce_with_logits, cross_entropy, soft_dice_loss, Activation, LossConfig};

#[test]
fn losses_match_pytorch() {
    let f = fixture("losses", "losses");
    let cw: Vec<f32> = f["class_weights"].to_vec1().unwrap();
    let (multi, onehot) = (&f["multi"], &f["onehot"]);
    let labels = &f["labels"];
    let labels_ign = &f["labels_ign"];
    type Term<'a> = Box<dyn Fn(&Tensor) -> Tensor + 'a>;
    let terms: Vec<(&str, Term)> = vec![
        (
            "bce",
            Box::new(|x| bce_with_logits(x, multi, None).unwrap()),
        ),
        (
            "bce_w",
            Box::new(|x| bce_with_logits(x, multi, Some(&cw)).unwrap()),
        ),
        (
            "ce",
            Box::new(|x| cross_entropy(x, labels, None, None).unwrap()),
        ),
        (
            "ce_w_ign",
            Box::new(|x| cross_entropy(x, labels_ign, Some(&cw), Some(255)).unwrap()),
        ),
        (
            "dice_sig",
            Box::new(|x| soft_dice_loss(x, multi, Activation::Sigmoid, 1e-5, None).unwrap()),
        ),
        (
            "dice_sig_w",
            Box::new(|x| soft_dice_loss(x, multi, Activation::Sigmoid, 1.0, Some(&cw)).unwrap()),
        ),
        (
            "dice_soft",
            Box::new(|x| soft_dice_loss(x, onehot, Activation::Softmax, 1e-5, None).unwrap()),
        ),
        (
            "combo_sig",
            Box::new(|x| LossConfig::default().loss(x, multi).unwrap()),
        ),
        (
            "combo_soft_w",
            Box::new(|x| {
                LossConfig {
                    activation: Activation::Softmax,
                    dice_weight: 0.5,
                    class_weights: Some(cw.clone()),
                    ..LossConfig::default()
                }
                .loss(x, onehot)
                .unwrap()
            }),
        ),
    ];
    for (name, term) in terms {
        let x = Var::from_tensor(&f["logits"]).unwrap();
        let v = term(x.as_tensor());
        assert_close(
            &format!("{name} value"),
            &v.reshape(1).unwrap(),
            &f[&format!("{name}.value")],
            1e-5,
        );
        let grads = v.backward().unwrap();
        assert_close(
            &format!("{name} gradient"),
            grads.get(&x).unwrap(),
            &f[&format!("{name}.grad")],
            1e-6,
        );
    }
}

#[test]
fn losses_reject_bad_shapes() {
    let f = fixture("losses", "losses");
    let x = &f["logits"];
    let wrong = x.narrow(1, 0, 2).unwrap();
    assert!(bce_with_logits(x, &wrong, None).is_err());
    assert!(bce_with_logits(x, &f["multi"], Some(&[1.0])).is_err());
    assert!(
        cross_entropy(x, &f["labels_ign"], None, None).is_err(),
        "255 is no class"
    );
}

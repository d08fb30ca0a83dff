#![allow(clippy::unwrap_used)]
//! Bilinear resize against `F.interpolate(mode="bilinear")`: values and input gradients.

use crate::common;

use candle_core::Var;
use common::{assert_close, fixture};
use seg_decoders::{resize_bilinear, AlignCorners};

#[test]
fn resize_matches_pytorch_values_and_gradients() {
    for name in ["up", "down", "mixed", "one"] {
        for (suffix, align) in [("noac", AlignCorners::False), ("ac", AlignCorners::True)] {
            let f = fixture("resize", &format!("{name}_{suffix}"));
            let x = Var::from_tensor(&f["x"]).unwrap();
            let (oh, ow) = (f["y"].dim(2).unwrap(), f["y"].dim(3).unwrap());
            let y = resize_bilinear(x.as_tensor(), (oh, ow), align).unwrap();
            assert_close(&format!("{name}_{suffix} values"), &y, &f["y"], 1e-5);
            let grads = (y * &f["r"])
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let g = grads.get(&x).expect("gradient reaches the input");
            assert_close(&format!("{name}_{suffix} gradient"), g, &f["grad_x"], 1e-5);
        }
    }
}

//! cxr-mini lung masks: the loader lives in the library (`seg_decoders::lung`).

pub use seg_decoders::lung::{batches, load, square_processor, Sample};

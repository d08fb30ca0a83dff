//! The phrase lists: mentions per observation and negation / uncertainty cues.

pub(crate) mod cues;
pub(crate) mod mentions;

//! napi face of the placement scorer.

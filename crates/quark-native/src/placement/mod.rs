//! Placement scorer: plain Rust, no napi types. The TypeScript twin (ts/orc/placement/twin.ts)
//! implements the same semantics with the same arithmetic, so both pick the same compute.
//!
//! # Semantics (shared, word for word, with the twin)
//!
//! Resources are integers: vcpus, ram_mb, disk_gb, bandwidth_mbps, in that order (r = 0..4).
//! Capacities lie in [0, 2^31-1], free values in [-2^31, 2^31-1], needs in [0, 2^30].
//! Overcommit ratios are integer per-mille `pm[r]` (1000 = none; the TS options' ratio x is
//! `round(x * 1000)`).
//!
//! Per compute the view keeps, for each resource, the headroom
//! `avail[r] = floor((free[r]*1000 + capacity[r]*(pm[r]-1000)) / 1000)` clamped to
//! [-2^30, 2^31-1], and
//! `inv[r] = f32(1000 / (capacity[r] * pm[r]))` (an f64 division rounded to f32; 0 if the
//! capacity is 0). A claim adds `-need` to free (clamped to ±2^40) and recomputes avail.
//!
//! Filters run in this order; a rejected compute counts under the first one that rejects it:
//! 1. alive: the compute's `alive` flag is set.
//! 2. excluded: the compute's id is not in `req.exclude`.
//! 3. zone: no `req.zone`, or the compute's zone equals it.
//! 4. labels: every label of the request is among the compute's labels.
//! 5. affinity: no `req.affinity`, or no alive compute hosts the group, or this one hosts it.
//! 6. anti_affinity: no `req.antiAffinity`, or this compute does not host the group.
//! 7. fits: for every resource, `need[r] <= avail[r]`, which for integers is exactly
//!    `need[r] <= free[r] + capacity[r]*(pm[r]-1000)/1000` (use up to capacity × ratio).
//!
//! Score, in f32 with every operation rounded as written (no fused multiply-add):
//! `f[r] = f32(avail[r] - need[r]) * inv[r]` is the fraction of the overcommitted capacity that
//! would be left after the placement: for a feasible pick it lies in [0, 1] (more if free >
//! capacity), which is the one normalisation step, done by the division; no min/max pass over
//! the candidates. The request's policy (its own, else the view's) picks the score:
//! - spread: `score = wr * ((f[0] + f[1]) + f[2]) + wb * f[3]` with
//!   `wr = f32(resource_weight / 3)`, `wb = f32(bandwidth_weight)`: more headroom is better.
//! - pack: `score = -(m + wl * f32(labels))` where `m` is the largest `f[r] * a[r]` (and 0),
//!   `a[r] = 1.0` if `need[r] > 0` else `0.0` (only the resources the request asks for count),
//!   `labels` the compute's count of distinct labels (at most 255) and `wl = f32(label_weight)`:
//!   the compute left fullest in its least used resource wins, and one that carries labels the
//!   request does not ask for is kept for requests that do.
//!
//! Defaults: spread, resource weight 1, bandwidth weight 0.5, label weight 1, 3 alternates.
//!
//! Ranking: higher score first; equal scores by the higher tie key
//! `mix64(fnv1a64(request id) ^ fnv1a64(compute id))` (see `hash`), so a replay of the same
//! request on the same view picks the same compute; equal keys (a 64-bit id hash collision)
//! by the smaller id in code point order. The answer is the best compute and the next
//! `alternates` in rank order. `place_batch` places requests in order and applies each
//! success's claim to the view before the next request.
//!
//! # Layout
//! Compute ids map to dense indices; removal swaps the last compute into the hole. The hot
//! columns (read by every scan) are 44 bytes per compute: avail 4×i32, inv 4×f32, labels
//! 2×u32 (bitset of the first 64 label names; later labels get extra word columns, 4 bytes per
//! 32 labels), meta u32 (zone id, label count, alive flag, and transient per-request marks for
//! excluded / affinity / anti-affinity computes, set from the group index and cleared after the
//! scan).
//!
//! Modules, each depending only on those above it: `rule` (headroom, fits, scores), `hash`,
//! `intern`, `columns` (the hot columns and the meta word), `filters` (requests resolved to
//! numbers and masks), `topk`, `kernel` (the scan), `view` (updates, marks and counts). The napi
//! face (crate::face::placement) is the only layer that knows JavaScript.

mod columns;
mod filters;
mod hash;
mod intern;
mod kernel;
mod rule;
mod topk;
mod view;

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use columns::{INLINE_LABELS, ZONE_ANY, ZONE_NONE};
pub use filters::{extra_masks, Prepared, Request};
pub use hash::{fnv1a64, mix64, tie_key};
pub use rule::{
    avail_of, check_need, fits, inv_of, Policy, Res, AVAIL_MIN, FREE_LIMIT, LABEL_COUNT_MAX,
    NEED_MAX, N_RES, OVERCOMMIT_PM_MAX,
};
pub use view::{ClusterView, Compute, Options, Outcome, ALTERNATES_MAX, GROUP_NONE};

pub const FILTER_COUNT: usize = 7;

/// The filters in the order they run (the contract's `FILTERS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Alive = 0,
    Excluded = 1,
    Zone = 2,
    Labels = 3,
    Affinity = 4,
    AntiAffinity = 5,
    Fits = 6,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("{field} must be an integer in [{min}, {max}], got {value}")]
    OutOfRange {
        field: &'static str,
        value: i64,
        min: i64,
        max: i64,
    },
    #[error("unknown compute {0}")]
    UnknownCompute(String),
    #[error("too many zones: at most 65535 distinct zone names")]
    TooManyZones,
    #[error("invalid scorer option: {0}")]
    InvalidOption(String),
}

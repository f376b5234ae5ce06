//! A request, resolved against the view's dictionaries into plain numbers (`Prepared`), and the
//! same request as the kernel tests it: masks over the meta word and the label words (`Query`).

use super::columns::{Hot, ZONE_ANY};
use super::rule::{Policy, Weights, N_RES};

/// A placement request (the contract's `PlacementRequest`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub id: String,
    pub need: super::rule::Res,
    pub zone: Option<String>,
    pub labels: Vec<String>,
    pub affinity: Option<String>,
    pub anti_affinity: Option<String>,
    pub exclude: Vec<String>,
    /// The policy for this request (the caller resolves a zone's override); None: the view's.
    pub policy: Option<Policy>,
}

/// A request resolved against the view's dictionaries: plain numbers, ready to scan.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prepared {
    pub need: [i32; N_RES],
    /// `ZONE_ANY`, `ZONE_NONE` or an interned zone id.
    pub zone: u32,
    /// Required inline labels (ids 0..64) as two 32-bit words.
    pub labels: [u32; 2],
    /// Required labels with ids >= 64, as (extra word index, mask) pairs.
    pub extra_labels: Vec<(usize, u32)>,
    /// A required label no compute has ever had: the labels filter rejects everything.
    pub labels_impossible: bool,
    pub affinity: u32,
    pub anti_affinity: u32,
    /// Dense indices of excluded computes.
    pub exclude: Vec<u32>,
    /// `fnv1a64(request id)`: the tie-break seed.
    pub seed: u64,
    pub policy: Policy,
}

impl Prepared {
    pub fn zone_active(&self) -> bool {
        self.zone != ZONE_ANY
    }
}

/// Groups label ids >= 64 into (extra word, mask) pairs.
pub fn extra_masks(ids: &[u32]) -> Vec<(usize, u32)> {
    let mut out: Vec<(usize, u32)> = Vec::new();
    for &id in ids {
        let w = (id / 32) as usize - 2;
        let bit = 1u32 << (id % 32);
        match out.iter_mut().find(|(x, _)| *x == w) {
            Some((_, m)) => *m |= bit,
            None => out.push((w, bit)),
        }
    }
    out
}

/// A request as the kernel sees it.
pub struct Query<'a> {
    pub need: [i32; N_RES],
    /// `meta & mask_pre == want_pre`: alive, not excluded, in the zone (the filters before labels).
    pub mask_pre: u32,
    pub want_pre: u32,
    /// `meta & mask_all == want_all`: all meta filters, affinity and anti-affinity included.
    pub mask_all: u32,
    pub want_all: u32,
    pub labels: [u32; 2],
    /// (extra word, mask) pairs for labels >= 64; every word exists.
    pub extra_labels: &'a [(usize, u32)],
    /// Some required label can never match.
    pub labels_impossible: bool,
    pub policy: Policy,
    pub weights: Weights,
    /// `rule::asked(need)`: the resources the pack score counts.
    pub asked: [f32; N_RES],
    pub seed: u64,
}

impl Query<'_> {
    pub fn labels_active(&self) -> bool {
        self.labels != [0, 0] || !self.extra_labels.is_empty() || self.labels_impossible
    }

    /// The labels filter for one compute.
    pub fn labels_ok(&self, hot: &Hot, i: usize) -> bool {
        let [r0, r1] = self.labels;
        !self.labels_impossible
            && hot.labels[0][i] & r0 == r0
            && hot.labels[1][i] & r1 == r1
            && self
                .extra_labels
                .iter()
                .all(|&(w, m)| hot.extra_labels[w][i] & m == m)
    }

    /// The filters before affinity (alive, excluded, zone, labels) for one compute.
    pub fn passes_pre(&self, hot: &Hot, i: usize) -> bool {
        hot.meta[i] & self.mask_pre == self.want_pre && self.labels_ok(hot, i)
    }
}

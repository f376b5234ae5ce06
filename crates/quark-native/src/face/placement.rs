//! napi face of the placement scorer: `NativeClusterView`, a thin class over
//! `placement::ClusterView`. Updates take strings and plain numbers (they are rare); `place`
//! takes one `Uint32Array` holding the request already resolved to numbers by
//! ts/orc/placement/native.ts and writes the answer back into it, so a placement costs one
//! call with one argument and no allocation on either side. Each request carries its policy
//! (the wrapper resolves the cluster's and its zone's setting), so a policy change costs nothing
//! here. The buffer must not be backed by a
//! SharedArrayBuffer (it is written in place).
//!
//! Request layout (u32 words):
//!   0..4  need (vcpus, ram_mb, disk_gb, bandwidth_mbps)
//!   4     zone id (0 any, 0x10000 unknown)      5, 6  inline label words
//!   7     flags (bit 0: a required label is unknown; bit 1: pack, else spread)
//!   8     affinity group id (0 none)            9     anti-affinity group id (0 none)
//!   10    seed high 32 bits                     11    seed low 32 bits
//!   12    count of extra label ids (>= 64)      13    count of excluded compute indices
//!   14..  the extra label ids, then the excluded indices
//! Answer layout (u32 words): 0 number of picks, 1..=k picks (best first), then considered,
//! then the seven rejection counts in filter order; k = alternates + 1.

use napi::bindgen_prelude::{Uint32Array, Uint32ArraySlice};
use napi_derive::napi;

use crate::error::QuarkError;
use crate::placement::{
    self, extra_masks, ClusterView, Compute, Options, Outcome, Policy, Prepared, FILTER_COUNT,
    N_RES,
};

pub const REQUEST_HEADER: usize = 14;

fn invalid(e: placement::Error) -> napi::Error {
    QuarkError::invalid_arg(e.to_string()).into()
}

fn arg(message: String) -> napi::Error {
    QuarkError::invalid_arg(message).into()
}

fn res(xs: &[i64], what: &str) -> napi::Result<[i64; N_RES]> {
    xs.try_into().map_err(|_| {
        arg(format!(
            "{what} must have {N_RES} numbers, got {}",
            xs.len()
        ))
    })
}

#[napi]
pub struct NativeClusterView {
    view: ClusterView,
    out: Outcome,
    prepared: Prepared,
    batch: Vec<Prepared>,
    outs: Vec<Outcome>,
}

/// Decodes one request at `words[at..]`; returns the offset of the next one.
fn decode(view: &ClusterView, words: &[u32], at: usize, p: &mut Prepared) -> napi::Result<usize> {
    let head = words
        .get(at..at + REQUEST_HEADER)
        .ok_or_else(|| arg("placement request buffer too short".into()))?;
    let n_extra = head[12] as usize;
    let n_excl = head[13] as usize;
    let body = words
        .get(at + REQUEST_HEADER..at + REQUEST_HEADER + n_extra + n_excl)
        .ok_or_else(|| arg("placement request buffer too short".into()))?;
    let need = std::array::from_fn(|r| i64::from(head[r]));
    p.need = placement::check_need(&need).map_err(invalid)?;
    p.zone = head[4];
    p.labels = [head[5], head[6]];
    p.labels_impossible = head[7] & 1 != 0;
    p.policy = if head[7] & 2 != 0 {
        Policy::Pack
    } else {
        Policy::Spread
    };
    p.affinity = head[8];
    p.anti_affinity = head[9];
    p.seed = (u64::from(head[10]) << 32) | u64::from(head[11]);
    let (extra, excl) = body.split_at(n_extra);
    if extra.iter().any(|&id| id < placement::INLINE_LABELS) {
        return Err(arg("extra label ids must be >= 64".into()));
    }
    p.extra_labels = extra_masks(extra);
    p.exclude.clear();
    p.exclude
        .extend(excl.iter().copied().filter(|&i| (i as usize) < view.len()));
    Ok(at + REQUEST_HEADER + n_extra + n_excl)
}

fn encode(o: &Outcome, k: usize, out: &mut [u32]) {
    out[0] = o.picks.len() as u32;
    out[1..1 + o.picks.len()].copy_from_slice(&o.picks);
    out[1 + k] = o.considered;
    out[2 + k..2 + k + FILTER_COUNT].copy_from_slice(&o.rejected);
}

#[napi]
impl NativeClusterView {
    /// `overcommit_pm`: per-mille ratios for vcpus, ram, disk, bandwidth. The weights are the
    /// spread score's (resource, bandwidth) and the pack score's (label).
    #[napi(constructor)]
    pub fn new(
        overcommit_pm: Vec<u32>,
        resource_weight: f64,
        bandwidth_weight: f64,
        label_weight: f64,
        alternates: u32,
    ) -> napi::Result<Self> {
        let overcommit_pm: [u32; N_RES] = overcommit_pm
            .try_into()
            .map_err(|_| arg(format!("overcommitPm must have {N_RES} numbers")))?;
        let opts = Options {
            overcommit_pm,
            policy: Policy::Spread,
            resource_weight,
            bandwidth_weight,
            label_weight,
            alternates,
        };
        Ok(Self {
            view: ClusterView::new(opts).map_err(invalid)?,
            out: Outcome::default(),
            prepared: Prepared::default(),
            batch: Vec::new(),
            outs: Vec::new(),
        })
    }

    #[napi(getter)]
    pub fn size(&self) -> u32 {
        self.view.len() as u32
    }

    /// Words of one answer: picks count, k picks, considered, 7 rejection counts.
    #[napi(getter)]
    pub fn answer_words(&self) -> u32 {
        self.view.options().alternates + 1 + 2 + FILTER_COUNT as u32
    }

    /// Bytes per compute of the hot columns every placement scans.
    #[napi(getter)]
    pub fn hot_bytes_per_node(&self) -> u32 {
        self.view.hot_bytes_per_node() as u32
    }

    /// Whether the AVX2 build of the kernel runs.
    #[napi(getter)]
    pub fn simd(&self) -> bool {
        self.view.simd()
    }

    #[napi]
    pub fn set_simd(&mut self, on: bool) {
        self.view.set_simd(on);
    }

    /// Inserts or replaces a compute; returns its dense index.
    #[napi]
    #[allow(clippy::too_many_arguments)]
    pub fn upsert(
        &mut self,
        id: String,
        capacity: Vec<i64>,
        free: Vec<i64>,
        zone: String,
        labels: Vec<String>,
        alive: bool,
        groups: Vec<String>,
    ) -> napi::Result<u32> {
        let c = Compute {
            id,
            capacity: res(&capacity, "capacity")?,
            free: res(&free, "free")?,
            zone,
            labels,
            alive,
            groups,
        };
        self.view.upsert(&c).map_err(invalid)
    }

    /// Removes the compute at `idx`; returns the index the last compute moved from, or -1.
    #[napi]
    pub fn remove_at(&mut self, idx: u32) -> napi::Result<i32> {
        if idx as usize >= self.view.len() {
            return Err(arg(format!("no compute at index {idx}")));
        }
        let (_, moved) = self.view.remove_at(idx);
        Ok(moved.map_or(-1, |m| m as i32))
    }

    #[napi]
    pub fn set_free_at(&mut self, idx: u32, free: Vec<i64>) -> napi::Result<()> {
        self.view
            .set_free_at(idx, &res(&free, "free")?)
            .map_err(invalid)
    }

    #[napi]
    pub fn set_alive_at(&mut self, idx: u32, alive: bool) -> napi::Result<()> {
        self.view.set_alive_at(idx, alive).map_err(invalid)
    }

    #[napi]
    pub fn set_groups_at(&mut self, idx: u32, groups: Vec<String>) -> napi::Result<()> {
        self.view.set_groups_at(idx, &groups).map_err(invalid)
    }

    /// Adds `sign * need` to the compute's free resources (-1 applies a claim, +1 releases one).
    #[napi]
    pub fn claim_at(&mut self, idx: u32, need: Vec<i64>, sign: i32) -> napi::Result<()> {
        if sign != 1 && sign != -1 {
            return Err(arg(format!("sign must be 1 or -1, got {sign}")));
        }
        self.view
            .apply_claim_at(idx, &res(&need, "need")?, i64::from(sign))
            .map_err(invalid)
    }

    /// Interned id of a zone, label or group name, or -1 if no compute ever had it.
    #[napi]
    pub fn zone_id(&self, name: String) -> i32 {
        self.view.zone_id(&name).map_or(-1, |i| i as i32)
    }

    #[napi]
    pub fn label_id(&self, name: String) -> i32 {
        self.view.label_id(&name).map_or(-1, |i| i as i32)
    }

    #[napi]
    pub fn group_id(&self, name: String) -> i32 {
        self.view.group_id(&name).map_or(-1, |i| i as i32)
    }

    #[napi]
    pub fn id_at(&self, idx: u32) -> Option<String> {
        self.view.id_at(idx).map(str::to_owned)
    }

    /// Places the request encoded in `io` and overwrites `io` with the answer; returns the
    /// number of picks (0: no valid host).
    #[napi]
    pub fn place(&mut self, mut io: Uint32ArraySlice) -> napi::Result<u32> {
        let k = self.view.options().alternates as usize + 1;
        if io.len() < 2 + k + FILTER_COUNT {
            return Err(arg("placement buffer too short for the answer".into()));
        }
        decode(&self.view, &io, 0, &mut self.prepared)?;
        self.view.place_prepared(&self.prepared, &mut self.out);
        // Returning a fresh array costs more than the whole scan of 1,000 computes (measured:
        // ~1.5 us per call), so the answer goes back through the caller's buffer.
        // SAFETY: `io` views a typed array whose memory stays alive for this synchronous call,
        // during which the JS thread is blocked in it; no other Rust reference to it exists. The
        // one caller (ts/orc/placement/native.ts) passes a private, non-shared buffer, so no
        // worker can write it concurrently.
        #[allow(unsafe_code)]
        let io = unsafe { io.as_mut() };
        encode(&self.out, k, io);
        Ok(self.out.picks.len() as u32)
    }

    /// Places `count` requests laid end to end in `reqs`, in order, each success claiming its
    /// need before the next; writes answer i at `out[i * answerWords..]`. Returns the successes.
    #[napi]
    pub fn place_batch(&mut self, reqs: Uint32Array, count: u32) -> napi::Result<Uint32Array> {
        let k = self.view.options().alternates as usize + 1;
        let stride = 2 + k + FILTER_COUNT;
        let count = count as usize;
        let mut out = vec![0u32; count * stride];
        self.batch.resize_with(count, Prepared::default);
        let mut at = 0;
        for p in self.batch.iter_mut() {
            at = decode(&self.view, &reqs, at, p)?;
        }
        self.view.place_batch(&self.batch, &mut self.outs);
        for (i, o) in self.outs.iter().enumerate() {
            encode(o, k, &mut out[i * stride..(i + 1) * stride]);
        }
        Ok(Uint32Array::new(out))
    }

    /// The memory floor for the benchmark: reads every byte of the hot columns once.
    #[napi]
    pub fn scan_columns(&self) -> u32 {
        self.view.scan_columns()
    }
}

//! The cluster view: one dense index per compute, hot columns for the scan, cold data beside.

use std::collections::HashMap;

use super::hash::fnv1a64;
use super::intern::Interner;
use super::kernel::{self, TopK};
use super::{Error, Filter, FILTER_COUNT, N_RES};

/// Resources in contract order: vcpus, ram_mb, disk_gb, bandwidth_mbps.
pub type Res = [i64; N_RES];

/// A compute's free resources are clamped to ±2^40 so that the twin's doubles stay exact.
pub const FREE_LIMIT: i64 = 1 << 40;
/// Per-mille overcommit ratios accepted: 0.001 .. 1000.
pub const OVERCOMMIT_PM_MAX: u32 = 1_000_000;
pub const ALTERNATES_MAX: u32 = 16;

// The `meta` column: zone id in the low 16 bits, then flags.
pub(crate) const ZONE_MASK: u32 = 0xFFFF;
pub(crate) const ALIVE: u32 = 1 << 16;
/// Transient marks, set for one request and cleared after it.
pub(crate) const EXCLUDED: u32 = 1 << 17;
pub(crate) const AFFINE: u32 = 1 << 18;
pub(crate) const ANTI_AFFINE: u32 = 1 << 19;
/// Request zone meaning "any zone".
pub const ZONE_ANY: u32 = 0;
/// Request zone that no compute has (an unknown name): matches nothing.
pub const ZONE_NONE: u32 = ZONE_MASK + 1;
/// Request group meaning "no group".
pub const GROUP_NONE: u32 = 0;
/// Label ids below this live in the two 32-bit label words; the rest in extra word columns.
pub const INLINE_LABELS: u32 = 64;

/// Scorer options, already in the integer / f32 form both implementations compute with.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Overcommit ratio per resource, in per-mille (1000 = no overcommit).
    pub overcommit_pm: [u32; N_RES],
    /// Bin-packing instead of spreading.
    pub pack: bool,
    pub resource_weight: f64,
    pub bandwidth_weight: f64,
    pub alternates: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            overcommit_pm: [1000; N_RES],
            pack: false,
            resource_weight: 1.0,
            bandwidth_weight: 0.5,
            alternates: 3,
        }
    }
}

/// What the view knows of one compute (the contract's `ComputeRecord`).
#[derive(Debug, Clone, PartialEq)]
pub struct Compute {
    pub id: String,
    pub capacity: Res,
    pub free: Res,
    pub zone: String,
    pub labels: Vec<String>,
    pub alive: bool,
    pub groups: Vec<String>,
}

/// A placement request (the contract's `PlacementRequest`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Request {
    pub id: String,
    pub need: Res,
    pub zone: Option<String>,
    pub labels: Vec<String>,
    pub affinity: Option<String>,
    pub anti_affinity: Option<String>,
    pub exclude: Vec<String>,
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
}

/// The answer to one request: the best compute first, then alternates; and why others lost.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    pub picks: Vec<u32>,
    pub considered: u32,
    pub rejected: [u32; FILTER_COUNT],
}

impl Outcome {
    pub fn best(&self) -> Option<u32> {
        self.picks.first().copied()
    }
    pub fn rejected_by(&self, f: Filter) -> u32 {
        self.rejected[f as usize]
    }
}

/// Hot columns: what the scan reads for every compute (see `hot_bytes_per_node`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Hot {
    /// Usable headroom: floor((free*1000 + capacity*(pm-1000)) / 1000), clamped to i32.
    pub avail: [Vec<i32>; N_RES],
    /// 1 / (capacity * pm / 1000) as f32; 0 when capacity is 0.
    pub inv: [Vec<f32>; N_RES],
    pub labels: [Vec<u32>; 2],
    pub meta: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct ClusterView {
    opts: Options,
    /// Signed resource weight / 3 (negative for pack) and bandwidth weight, as the kernel uses them.
    pub(crate) w_resource: f32,
    pub(crate) w_bandwidth: f32,
    pub(crate) hot: Hot,
    /// Label words 2.. (labels with ids >= 64), one column per word; empty while unused.
    pub(crate) extra_labels: Vec<Vec<u32>>,
    /// fnv1a64 of each compute id: read only to break ties.
    pub(crate) id_hash: Vec<u64>,
    // Cold data, read on updates only.
    ids: Vec<String>,
    index: HashMap<String, u32>,
    capacity: Vec<[i32; N_RES]>,
    free: Vec<Res>,
    node_groups: Vec<Vec<u32>>,
    /// Members (dense indices) of each group id; index 0 unused.
    members: Vec<Vec<u32>>,
    zones: Interner,
    labels: Interner,
    groups: Interner,
    topk: TopK,
}

fn floor_div_1000(n: i64) -> i64 {
    n.div_euclid(1000)
}

/// Headroom the fits filter compares with: need <= avail  <=>  need*1000 <= free*1000 + cap*(pm-1000).
pub fn avail_of(free: i64, cap: i32, pm: u32) -> i32 {
    let n = free * 1000 + i64::from(cap) * (i64::from(pm) - 1000);
    floor_div_1000(n).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

/// The weighers' normalisation: 1 / effective capacity, so a fraction of it lands in [0, 1].
pub fn inv_of(cap: i32, pm: u32) -> f32 {
    if cap == 0 {
        0.0
    } else {
        (1000.0 / (f64::from(cap) * f64::from(pm))) as f32
    }
}

fn check(field: &'static str, v: i64, min: i64, max: i64) -> Result<(), Error> {
    if v < min || v > max {
        return Err(Error::OutOfRange {
            field,
            value: v,
            min,
            max,
        });
    }
    Ok(())
}

const RES_NAMES: [&str; N_RES] = ["vcpus", "ram_mb", "disk_gb", "bandwidth_mbps"];

pub fn check_need(need: &Res) -> Result<[i32; N_RES], Error> {
    let mut out = [0; N_RES];
    for r in 0..N_RES {
        check(RES_NAMES[r], need[r], 0, i64::from(i32::MAX))?;
        out[r] = need[r] as i32;
    }
    Ok(out)
}

impl ClusterView {
    pub fn new(opts: Options) -> Result<Self, Error> {
        for pm in opts.overcommit_pm {
            if pm == 0 || pm > OVERCOMMIT_PM_MAX {
                return Err(Error::InvalidOption(format!(
                    "overcommit per-mille {pm} not in 1..={OVERCOMMIT_PM_MAX}"
                )));
            }
        }
        for w in [opts.resource_weight, opts.bandwidth_weight] {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::InvalidOption(format!(
                    "weight {w} must be finite and >= 0"
                )));
            }
        }
        if opts.alternates > ALTERNATES_MAX {
            return Err(Error::InvalidOption(format!(
                "alternates {} > {ALTERNATES_MAX}",
                opts.alternates
            )));
        }
        let signed = if opts.pack {
            -opts.resource_weight
        } else {
            opts.resource_weight
        };
        Ok(Self {
            w_resource: (signed / 3.0) as f32,
            w_bandwidth: opts.bandwidth_weight as f32,
            topk: TopK::new(opts.alternates as usize + 1),
            opts,
            hot: Hot::default(),
            extra_labels: Vec::new(),
            id_hash: Vec::new(),
            ids: Vec::new(),
            index: HashMap::new(),
            capacity: Vec::new(),
            free: Vec::new(),
            node_groups: Vec::new(),
            members: vec![Vec::new()],
            zones: Interner::new(1),
            labels: Interner::new(0),
            groups: Interner::new(1),
        })
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn index_of(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    pub fn id_at(&self, idx: u32) -> Option<&str> {
        self.ids.get(idx as usize).map(String::as_str)
    }

    pub fn free_at(&self, idx: u32) -> Option<Res> {
        self.free.get(idx as usize).copied()
    }

    pub fn capacity_at(&self, idx: u32) -> Option<[i32; N_RES]> {
        self.capacity.get(idx as usize).copied()
    }

    pub fn zone_id(&self, name: &str) -> Option<u32> {
        self.zones.get(name)
    }

    pub fn label_id(&self, name: &str) -> Option<u32> {
        self.labels.get(name)
    }

    pub fn group_id(&self, name: &str) -> Option<u32> {
        self.groups.get(name)
    }

    /// Bytes per compute of the hot columns, the ones every scan reads.
    pub fn hot_bytes_per_node(&self) -> usize {
        N_RES * 4 + N_RES * 4 + 2 * 4 + 4 + self.extra_labels.len() * 4
    }

    /// Inserts or replaces a compute; returns its dense index.
    pub fn upsert(&mut self, c: &Compute) -> Result<u32, Error> {
        let mut cap = [0i32; N_RES];
        for r in 0..N_RES {
            check(RES_NAMES[r], c.capacity[r], 0, i64::from(i32::MAX))?;
            check(
                RES_NAMES[r],
                c.free[r],
                i64::from(i32::MIN),
                i64::from(i32::MAX),
            )?;
            cap[r] = c.capacity[r] as i32;
        }
        let zone = self.zones.get(&c.zone).unwrap_or(self.zones.next_id());
        if zone > ZONE_MASK {
            return Err(Error::TooManyZones);
        }
        let zone = self.zones.intern(&c.zone);
        let mut words = [0u32; 2];
        let mut extra: Vec<(usize, u32)> = Vec::new();
        for l in &c.labels {
            let id = self.labels.intern(l);
            let w = (id / 32) as usize;
            let bit = 1u32 << (id % 32);
            if w < 2 {
                words[w] |= bit;
            } else {
                extra.push((w - 2, bit));
            }
        }
        let group_ids: Vec<u32> = self.intern_groups(&c.groups);
        let idx = match self.index.get(&c.id) {
            Some(&i) => i,
            None => self.push_blank(&c.id),
        };
        let i = idx as usize;
        self.capacity[i] = cap;
        for (r, &f) in c.free.iter().enumerate() {
            self.free[i][r] = f;
        }
        self.refresh_resources(i);
        self.hot.labels[0][i] = words[0];
        self.hot.labels[1][i] = words[1];
        for col in &mut self.extra_labels {
            col[i] = 0;
        }
        for (w, bit) in extra {
            while self.extra_labels.len() <= w {
                self.extra_labels.push(vec![0; self.ids.len()]);
            }
            self.extra_labels[w][i] |= bit;
        }
        self.hot.meta[i] = zone | if c.alive { ALIVE } else { 0 };
        self.replace_groups(idx, group_ids);
        Ok(idx)
    }

    fn push_blank(&mut self, id: &str) -> u32 {
        let idx = self.ids.len() as u32;
        self.ids.push(id.to_owned());
        self.index.insert(id.to_owned(), idx);
        self.id_hash.push(fnv1a64(id));
        self.capacity.push([0; N_RES]);
        self.free.push([0; N_RES]);
        self.node_groups.push(Vec::new());
        for r in 0..N_RES {
            self.hot.avail[r].push(0);
            self.hot.inv[r].push(0.0);
        }
        self.hot.labels[0].push(0);
        self.hot.labels[1].push(0);
        for col in &mut self.extra_labels {
            col.push(0);
        }
        self.hot.meta.push(0);
        idx
    }

    fn intern_groups(&mut self, names: &[String]) -> Vec<u32> {
        let mut ids: Vec<u32> = names.iter().map(|g| self.groups.intern(g)).collect();
        ids.sort_unstable();
        ids.dedup();
        while self.members.len() <= self.groups.next_id() as usize {
            self.members.push(Vec::new());
        }
        ids
    }

    fn replace_groups(&mut self, idx: u32, new: Vec<u32>) {
        let old = std::mem::take(&mut self.node_groups[idx as usize]);
        for g in old {
            let m = &mut self.members[g as usize];
            if let Some(p) = m.iter().position(|&x| x == idx) {
                m.swap_remove(p);
            }
        }
        for &g in &new {
            self.members[g as usize].push(idx);
        }
        self.node_groups[idx as usize] = new;
    }

    fn refresh_resources(&mut self, i: usize) {
        for r in 0..N_RES {
            let pm = self.opts.overcommit_pm[r];
            self.hot.avail[r][i] = avail_of(self.free[i][r], self.capacity[i][r], pm);
            self.hot.inv[r][i] = inv_of(self.capacity[i][r], pm);
        }
    }

    fn idx(&self, id: &str) -> Result<u32, Error> {
        self.index_of(id)
            .ok_or_else(|| Error::UnknownCompute(id.to_owned()))
    }

    fn check_idx(&self, idx: u32) -> Result<usize, Error> {
        if (idx as usize) < self.len() {
            Ok(idx as usize)
        } else {
            Err(Error::UnknownCompute(format!("#{idx}")))
        }
    }

    /// Removes a compute by swapping the last one into its index.
    /// Returns (removed index, index the moved compute came from, if one moved).
    pub fn remove(&mut self, id: &str) -> Option<(u32, Option<u32>)> {
        let idx = self.index_of(id)?;
        Some(self.remove_at(idx))
    }

    pub fn remove_at(&mut self, idx: u32) -> (u32, Option<u32>) {
        let i = idx as usize;
        let last = self.len() as u32 - 1;
        self.replace_groups(idx, Vec::new());
        let moved = (idx != last).then_some(last);
        if moved.is_some() {
            // The last compute takes index `idx`: repoint its group memberships.
            for &g in &self.node_groups[last as usize] {
                for m in self.members[g as usize].iter_mut() {
                    if *m == last {
                        *m = idx;
                    }
                }
            }
        }
        let id = self.ids.swap_remove(i);
        self.index.remove(&id);
        if let Some(moved_id) = self.ids.get(i) {
            self.index.insert(moved_id.clone(), idx);
        }
        self.id_hash.swap_remove(i);
        self.capacity.swap_remove(i);
        self.free.swap_remove(i);
        self.node_groups.swap_remove(i);
        for r in 0..N_RES {
            self.hot.avail[r].swap_remove(i);
            self.hot.inv[r].swap_remove(i);
        }
        self.hot.labels[0].swap_remove(i);
        self.hot.labels[1].swap_remove(i);
        for col in &mut self.extra_labels {
            col.swap_remove(i);
        }
        self.hot.meta.swap_remove(i);
        (idx, moved)
    }

    pub fn set_free(&mut self, id: &str, free: &Res) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.set_free_at(idx, free)
    }

    pub fn set_free_at(&mut self, idx: u32, free: &Res) -> Result<(), Error> {
        let i = self.check_idx(idx)?;
        for r in 0..N_RES {
            check(
                RES_NAMES[r],
                free[r],
                i64::from(i32::MIN),
                i64::from(i32::MAX),
            )?;
        }
        self.free[i] = *free;
        self.refresh_resources(i);
        Ok(())
    }

    pub fn set_alive(&mut self, id: &str, alive: bool) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.set_alive_at(idx, alive)
    }

    pub fn set_alive_at(&mut self, idx: u32, alive: bool) -> Result<(), Error> {
        let i = self.check_idx(idx)?;
        if alive {
            self.hot.meta[i] |= ALIVE;
        } else {
            self.hot.meta[i] &= !ALIVE;
        }
        Ok(())
    }

    pub fn set_groups(&mut self, id: &str, groups: &[String]) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.set_groups_at(idx, groups)
    }

    pub fn set_groups_at(&mut self, idx: u32, groups: &[String]) -> Result<(), Error> {
        self.check_idx(idx)?;
        let ids = self.intern_groups(groups);
        self.replace_groups(idx, ids);
        Ok(())
    }

    pub fn apply_claim(&mut self, id: &str, need: &Res) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.apply_claim_at(idx, need, -1)
    }

    pub fn release_claim(&mut self, id: &str, need: &Res) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.apply_claim_at(idx, need, 1)
    }

    /// Adds `sign * need` to free (sign -1 applies a claim, +1 releases one).
    pub fn apply_claim_at(&mut self, idx: u32, need: &Res, sign: i64) -> Result<(), Error> {
        let i = self.check_idx(idx)?;
        let need = check_need(need)?;
        for (r, &n) in need.iter().enumerate() {
            self.free[i][r] =
                (self.free[i][r] + sign * i64::from(n)).clamp(-FREE_LIMIT, FREE_LIMIT);
        }
        self.refresh_resources(i);
        Ok(())
    }

    /// Resolves names against the view's dictionaries.
    pub fn prepare(&self, req: &Request) -> Result<Prepared, Error> {
        let need = check_need(&req.need)?;
        let zone = match &req.zone {
            None => ZONE_ANY,
            Some(z) => self.zones.get(z).unwrap_or(ZONE_NONE),
        };
        let mut p = Prepared {
            need,
            zone,
            seed: fnv1a64(&req.id),
            ..Prepared::default()
        };
        let mut extra: Vec<u32> = Vec::new();
        for l in &req.labels {
            match self.labels.get(l) {
                None => p.labels_impossible = true,
                Some(id) if id < INLINE_LABELS => p.labels[(id / 32) as usize] |= 1 << (id % 32),
                Some(id) => extra.push(id),
            }
        }
        p.extra_labels = extra_masks(&extra);
        let group = |g: &Option<String>| {
            g.as_deref()
                .and_then(|g| self.groups.get(g))
                .unwrap_or(GROUP_NONE)
        };
        p.affinity = group(&req.affinity);
        p.anti_affinity = group(&req.anti_affinity);
        p.exclude = req
            .exclude
            .iter()
            .filter_map(|e| self.index_of(e))
            .collect();
        Ok(p)
    }

    pub fn place(&mut self, req: &Request) -> Result<Outcome, Error> {
        let p = self.prepare(req)?;
        let mut out = Outcome::default();
        self.place_prepared(&p, &mut out);
        Ok(out)
    }

    /// Places one prepared request; `out` is overwritten (its buffers are reused).
    pub fn place_prepared(&mut self, p: &Prepared, out: &mut Outcome) {
        let n = self.len();
        let meta = &mut self.hot.meta;
        for &e in &p.exclude {
            if let Some(m) = meta.get_mut(e as usize) {
                *m |= EXCLUDED;
            }
        }
        let mut affinity_active = false;
        if let Some(ms) = self
            .members
            .get(p.affinity as usize)
            .filter(|_| p.affinity != GROUP_NONE)
        {
            for &i in ms {
                meta[i as usize] |= AFFINE;
                affinity_active |= meta[i as usize] & ALIVE != 0;
            }
        }
        if let Some(ms) = self
            .members
            .get(p.anti_affinity as usize)
            .filter(|_| p.anti_affinity != GROUP_NONE)
        {
            for &i in ms {
                meta[i as usize] |= ANTI_AFFINE;
            }
        }
        self.topk.reset();
        let cols = kernel::Columns {
            hot: &self.hot,
            extra_labels: &self.extra_labels,
            id_hash: &self.id_hash,
            ids: &self.ids,
            w_resource: self.w_resource,
            w_bandwidth: self.w_bandwidth,
        };
        let survivors = kernel::scan(&cols, p, affinity_active, &mut self.topk);
        // Clear the transient marks wholesale on the few computes that carry them.
        let meta = &mut self.hot.meta;
        for &e in &p.exclude {
            if let Some(m) = meta.get_mut(e as usize) {
                *m &= !EXCLUDED;
            }
        }
        for g in [p.affinity, p.anti_affinity] {
            if g != GROUP_NONE {
                if let Some(ms) = self.members.get(g as usize) {
                    for &i in ms {
                        meta[i as usize] &= !(AFFINE | ANTI_AFFINE);
                    }
                }
            }
        }
        out.considered = n as u32;
        let mut prev = n as u32;
        for (f, s) in survivors.iter().enumerate() {
            out.rejected[f] = prev - s;
            prev = *s;
        }
        out.picks.clear();
        out.picks.extend(self.topk.entries().iter().map(|e| e.idx));
    }

    /// Places requests in order; each success applies its claim before the next request.
    pub fn place_batch(&mut self, reqs: &[Prepared], outs: &mut Vec<Outcome>) {
        outs.resize_with(reqs.len(), Outcome::default);
        for (p, out) in reqs.iter().zip(outs.iter_mut()) {
            self.place_prepared(p, out);
            if let Some(best) = out.best() {
                let need = p.need.map(i64::from);
                // Cannot fail: `best` is a live index and `need` was checked when prepared.
                let _ = self.apply_claim_at(best, &need, -1);
            }
        }
    }

    /// The memory floor: reads every byte of the hot columns once and folds them into a checksum.
    pub fn scan_columns(&self) -> u32 {
        let mut acc = 0u32;
        let fold = |xs: &[u32]| xs.iter().fold(0u32, |a, &x| a.wrapping_add(x));
        for r in 0..N_RES {
            acc = acc.wrapping_add(
                self.hot.avail[r]
                    .iter()
                    .fold(0u32, |a, &x| a.wrapping_add(x as u32)),
            );
            acc = acc.wrapping_add(
                self.hot.inv[r]
                    .iter()
                    .fold(0u32, |a, &x| a.wrapping_add(x.to_bits())),
            );
        }
        acc = acc.wrapping_add(fold(&self.hot.labels[0]));
        acc = acc.wrapping_add(fold(&self.hot.labels[1]));
        for col in &self.extra_labels {
            acc = acc.wrapping_add(fold(col));
        }
        acc.wrapping_add(fold(&self.hot.meta))
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

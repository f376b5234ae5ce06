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
/// Largest need per resource; with avail >= AVAIL_MIN, `avail - need` never overflows an i32.
pub const NEED_MAX: i64 = 1 << 30;
/// Headroom is clamped to [AVAIL_MIN, i32::MAX]; below AVAIL_MIN nothing fits either way.
pub const AVAIL_MIN: i32 = -(1 << 30);
/// Per-mille overcommit ratios accepted: 0.001 .. 1000.
pub const OVERCOMMIT_PM_MAX: u32 = 1_000_000;
pub const ALTERNATES_MAX: u32 = 16;

// The `meta` column: zone id in the low 16 bits, then flags.
pub(crate) const ZONE_MASK: u32 = 0xFFFF;
// Flags sit in the top bits so that an arithmetic shift turns each into a lane mask.
pub(crate) const ALIVE: u32 = 1 << 31;
/// Transient marks, set for one request and cleared after it.
pub(crate) const EXCLUDED: u32 = 1 << 30;
pub(crate) const AFFINE: u32 = 1 << 29;
pub(crate) const ANTI_AFFINE: u32 = 1 << 28;
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
    /// Usable headroom: floor((free*1000 + capacity*(pm-1000)) / 1000), clamped to [AVAIL_MIN, i32::MAX].
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
    /// Alive computes, in all and per zone id: the counts before the labels filter need no scan.
    alive_total: u32,
    alive_in_zone: Vec<u32>,
    /// Run the AVX2 build of the kernel.
    simd: bool,
}

fn floor_div_1000(n: i64) -> i64 {
    n.div_euclid(1000)
}

/// Headroom the fits filter compares with: need <= avail  <=>  need*1000 <= free*1000 + cap*(pm-1000).
pub fn avail_of(free: i64, cap: i32, pm: u32) -> i32 {
    let n = free * 1000 + i64::from(cap) * (i64::from(pm) - 1000);
    floor_div_1000(n).clamp(i64::from(AVAIL_MIN), i64::from(i32::MAX)) as i32
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
        check(RES_NAMES[r], need[r], 0, NEED_MAX)?;
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
            alive_total: 0,
            alive_in_zone: Vec::new(),
            simd: kernel::avx2_available(),
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
        self.set_meta(i, zone | if c.alive { ALIVE } else { 0 });
        self.replace_groups(idx, group_ids);
        Ok(idx)
    }

    /// Writes a compute's meta word, keeping the alive counts in step.
    fn set_meta(&mut self, i: usize, m: u32) {
        let old = self.hot.meta[i];
        if old & ALIVE != 0 {
            self.alive_total -= 1;
            self.alive_in_zone[(old & ZONE_MASK) as usize] -= 1;
        }
        if m & ALIVE != 0 {
            let z = (m & ZONE_MASK) as usize;
            if self.alive_in_zone.len() <= z {
                self.alive_in_zone.resize(z + 1, 0);
            }
            self.alive_total += 1;
            self.alive_in_zone[z] += 1;
        }
        self.hot.meta[i] = m;
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
        self.set_meta(i, 0);
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
        let m = self.hot.meta[i];
        self.set_meta(i, if alive { m | ALIVE } else { m & !ALIVE });
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
        let n = self.len() as u32;
        let zone_active = p.zone != ZONE_ANY;
        let zone_ok = |m: u32| !zone_active || m & ZONE_MASK == p.zone;
        // Transient marks. Excluded computes are counted as they are marked (ids may repeat).
        let mut excluded_alive = 0u32;
        let mut excluded_alive_in_zone = 0u32;
        for &e in &p.exclude {
            if let Some(m) = self.hot.meta.get_mut(e as usize) {
                if *m & (ALIVE | EXCLUDED) == ALIVE {
                    excluded_alive += 1;
                    excluded_alive_in_zone += u32::from(zone_ok(*m));
                }
                *m |= EXCLUDED;
            }
        }
        // Taken out for the call so that marking can borrow the columns mutably.
        let members = std::mem::take(&mut self.members);
        let group = |g: u32| -> &[u32] {
            match g {
                GROUP_NONE => &[],
                g => members.get(g as usize).map_or(&[], Vec::as_slice),
            }
        };
        let affinity = group(p.affinity);
        let anti = group(p.anti_affinity);
        let mut affinity_active = false;
        for &i in affinity {
            self.hot.meta[i as usize] |= AFFINE;
            affinity_active |= self.hot.meta[i as usize] & ALIVE != 0;
        }
        for &i in anti {
            self.hot.meta[i as usize] |= ANTI_AFFINE;
        }
        let extra_missing = p
            .extra_labels
            .iter()
            .any(|&(w, _)| w >= self.extra_labels.len());
        let zone_mask = if zone_active { ZONE_MASK } else { 0 };
        let zone_want = if zone_active { p.zone } else { 0 };
        let mask_pre = ALIVE | EXCLUDED | zone_mask;
        let want_pre = ALIVE | zone_want;
        let affine = if affinity_active { AFFINE } else { 0 };
        let q = kernel::Query {
            need: p.need,
            mask_pre,
            want_pre,
            mask_all: mask_pre | ANTI_AFFINE | affine,
            want_all: want_pre | affine,
            labels: p.labels,
            extra_labels: if extra_missing { &[] } else { &p.extra_labels },
            labels_impossible: p.labels_impossible || extra_missing,
            w_resource: self.w_resource,
            w_bandwidth: self.w_bandwidth,
            seed: p.seed,
        };
        let cols = kernel::Columns {
            hot: &self.hot,
            extra_labels: &self.extra_labels,
            id_hash: &self.id_hash,
            ids: &self.ids,
        };
        self.topk.reset();
        let counts = kernel::scan(&cols, &q, &mut self.topk, self.simd);

        // Survivors of each filter in turn. Those before labels come from the maintained alive
        // counts and the exclude list; affinity and anti-affinity from the groups' members.
        let s1 = self.alive_total;
        let s2 = s1 - excluded_alive;
        let s3 = if zone_active {
            self.alive_in_zone
                .get(p.zone as usize)
                .copied()
                .unwrap_or(0)
                - excluded_alive_in_zone
        } else {
            s2
        };
        let s4 = if q.labels_active() {
            counts.labels_pass
        } else {
            s3
        };
        let meta = &self.hot.meta;
        let passes_pre = |i: u32| meta[i as usize] & mask_pre == want_pre && self.labels_ok(i, &q);
        let s5 = if affinity_active {
            affinity.iter().filter(|&&i| passes_pre(i)).count() as u32
        } else {
            s4
        };
        let anti_hit = anti
            .iter()
            .filter(|&&i| passes_pre(i) && (!affinity_active || meta[i as usize] & AFFINE != 0))
            .count() as u32;
        let s6 = s5 - anti_hit;
        let s7 = counts.feasible;
        let survivors = [s1, s2, s3, s4, s5, s6, s7];
        debug_assert!(survivors.windows(2).all(|w| w[0] >= w[1]) && s1 <= n);

        // Clear the marks on the few computes that carry them.
        let meta = &mut self.hot.meta;
        for &e in &p.exclude {
            if let Some(m) = meta.get_mut(e as usize) {
                *m &= !EXCLUDED;
            }
        }
        for &i in affinity.iter().chain(anti) {
            meta[i as usize] &= !(AFFINE | ANTI_AFFINE);
        }
        self.members = members;
        out.considered = n;
        let mut prev = n;
        for (f, s) in survivors.iter().enumerate() {
            out.rejected[f] = prev - s;
            prev = *s;
        }
        out.picks.clear();
        out.picks.extend(self.topk.entries().iter().map(|e| e.idx));
    }

    /// The labels filter for one compute.
    fn labels_ok(&self, i: u32, q: &kernel::Query) -> bool {
        let i = i as usize;
        let [r0, r1] = q.labels;
        !q.labels_impossible
            && self.hot.labels[0][i] & r0 == r0
            && self.hot.labels[1][i] & r1 == r1
            && q.extra_labels
                .iter()
                .all(|&(w, m)| self.extra_labels[w][i] & m == m)
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

    /// The memory floor: reads every byte of the hot columns once and folds them into a checksum,
    /// built like the kernel (AVX2 when the kernel uses it).
    pub fn scan_columns(&self) -> u32 {
        kernel::scan_columns(&self.hot, &self.extra_labels, self.simd)
    }

    /// Runs the portable build of the kernel even where AVX2 is available (for tests).
    pub fn set_simd(&mut self, on: bool) {
        self.simd = on && kernel::avx2_available();
    }

    pub fn simd(&self) -> bool {
        self.simd
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

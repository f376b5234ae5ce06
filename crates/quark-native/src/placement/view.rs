//! The cluster view: one dense index per compute, hot columns for the scan (`columns`), cold
//! data beside; updates keep both in step, and a placement marks, scans (`kernel`) and counts.

use std::collections::HashMap;

use super::columns::{
    meta_of, Hot, AFFINE, ALIVE, ANTI_AFFINE, EXCLUDED, INLINE_LABELS, LABEL_COUNT_MASK, ZONE_ANY,
    ZONE_MASK, ZONE_NONE,
};
use super::filters::{extra_masks, Prepared, Query, Request};
use super::hash::fnv1a64;
use super::intern::Interner;
use super::kernel;
use super::rule::{
    asked, check, check_need, Policy, Res, Weights, FREE_LIMIT, N_RES, OVERCOMMIT_PM_MAX, RES_NAMES,
};
use super::topk::TopK;
use super::{Error, Filter, FILTER_COUNT};

pub const ALTERNATES_MAX: u32 = 16;
/// Request group meaning "no group".
pub const GROUP_NONE: u32 = 0;

/// Scorer options, already in the integer / f32 form both implementations compute with.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Overcommit ratio per resource, in per-mille (1000 = no overcommit).
    pub overcommit_pm: [u32; N_RES],
    /// The policy of requests that name none.
    pub policy: Policy,
    /// Spread: weight of vcpus, ram and disk headroom.
    pub resource_weight: f64,
    /// Spread: weight of bandwidth headroom.
    pub bandwidth_weight: f64,
    /// Pack: what one label a request does not ask for costs, in fractions of a compute.
    pub label_weight: f64,
    pub alternates: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            overcommit_pm: [1000; N_RES],
            policy: Policy::Spread,
            resource_weight: 1.0,
            bandwidth_weight: 0.5,
            label_weight: 1.0,
            alternates: 3,
        }
    }
}

impl Options {
    pub fn validate(&self) -> Result<Weights, Error> {
        for pm in self.overcommit_pm {
            if pm == 0 || pm > OVERCOMMIT_PM_MAX {
                return Err(Error::InvalidOption(format!(
                    "overcommit per-mille {pm} not in 1..={OVERCOMMIT_PM_MAX}"
                )));
            }
        }
        for w in [
            self.resource_weight,
            self.bandwidth_weight,
            self.label_weight,
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(Error::InvalidOption(format!(
                    "weight {w} must be finite and >= 0"
                )));
            }
        }
        if self.alternates > ALTERNATES_MAX {
            return Err(Error::InvalidOption(format!(
                "alternates {} > {ALTERNATES_MAX}",
                self.alternates
            )));
        }
        Ok(Weights {
            resource: (self.resource_weight / 3.0) as f32,
            bandwidth: self.bandwidth_weight as f32,
            labels: self.label_weight as f32,
        })
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

#[derive(Debug, Clone)]
pub struct ClusterView {
    opts: Options,
    weights: Weights,
    hot: Hot,
    /// fnv1a64 of each compute id: read only to break ties.
    id_hash: Vec<u64>,
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

fn check_free(free: &Res) -> Result<(), Error> {
    for (r, &f) in free.iter().enumerate() {
        check(RES_NAMES[r], f, i64::from(i32::MIN), i64::from(i32::MAX))?;
    }
    Ok(())
}

impl ClusterView {
    pub fn new(opts: Options) -> Result<Self, Error> {
        let weights = opts.validate()?;
        Ok(Self {
            weights,
            topk: TopK::new(opts.alternates as usize + 1),
            opts,
            hot: Hot::default(),
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
        self.hot.bytes_per_node()
    }

    /// Inserts or replaces a compute; returns its dense index.
    pub fn upsert(&mut self, c: &Compute) -> Result<u32, Error> {
        let mut cap = [0i32; N_RES];
        for r in 0..N_RES {
            check(RES_NAMES[r], c.capacity[r], 0, i64::from(i32::MAX))?;
            cap[r] = c.capacity[r] as i32;
        }
        check_free(&c.free)?;
        let zone = self.zones.get(&c.zone).unwrap_or(self.zones.next_id());
        if zone > ZONE_MASK {
            return Err(Error::TooManyZones);
        }
        let zone = self.zones.intern(&c.zone);
        let mut label_ids: Vec<u32> = c.labels.iter().map(|l| self.labels.intern(l)).collect();
        label_ids.sort_unstable();
        label_ids.dedup();
        let mut words = [0u32; 2];
        let mut extra: Vec<(usize, u32)> = Vec::new();
        for &id in &label_ids {
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
        self.free[i] = c.free;
        self.refresh_resources(i);
        self.hot.set_labels(i, words, &extra);
        self.set_meta(i, meta_of(zone, label_ids.len(), c.alive));
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
        self.hot.push_blank();
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
        self.hot.set_resources(
            i,
            &self.free[i],
            &self.capacity[i],
            &self.opts.overcommit_pm,
        );
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
        self.set_meta(i, 0);
        self.hot.swap_remove(i);
        (idx, moved)
    }

    pub fn set_free(&mut self, id: &str, free: &Res) -> Result<(), Error> {
        let idx = self.idx(id)?;
        self.set_free_at(idx, free)
    }

    pub fn set_free_at(&mut self, idx: u32, free: &Res) -> Result<(), Error> {
        let i = self.check_idx(idx)?;
        check_free(free)?;
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
            policy: req.policy.unwrap_or(self.opts.policy),
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
        let zone_active = p.zone_active();
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
            .any(|&(w, _)| w >= self.hot.extra_labels.len());
        let zone_mask = if zone_active { ZONE_MASK } else { 0 };
        let zone_want = if zone_active { p.zone } else { 0 };
        let mask_pre = ALIVE | EXCLUDED | zone_mask;
        let want_pre = ALIVE | zone_want;
        let affine = if affinity_active { AFFINE } else { 0 };
        debug_assert_eq!(mask_pre & LABEL_COUNT_MASK, 0);
        let q = Query {
            need: p.need,
            mask_pre,
            want_pre,
            mask_all: mask_pre | ANTI_AFFINE | affine,
            want_all: want_pre | affine,
            labels: p.labels,
            extra_labels: if extra_missing { &[] } else { &p.extra_labels },
            labels_impossible: p.labels_impossible || extra_missing,
            policy: p.policy,
            weights: self.weights,
            asked: asked(&p.need),
            seed: p.seed,
        };
        let cols = kernel::Columns {
            hot: &self.hot,
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
        let hot = &self.hot;
        let s5 = if affinity_active {
            affinity
                .iter()
                .filter(|&&i| q.passes_pre(hot, i as usize))
                .count() as u32
        } else {
            s4
        };
        let anti_hit = anti
            .iter()
            .filter(|&&i| {
                q.passes_pre(hot, i as usize)
                    && (!affinity_active || hot.meta[i as usize] & AFFINE != 0)
            })
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
        kernel::scan_columns(&self.hot, self.simd)
    }

    /// Runs the portable build of the kernel even where AVX2 is available (for tests).
    pub fn set_simd(&mut self, on: bool) {
        self.simd = on && kernel::avx2_available();
    }

    pub fn simd(&self) -> bool {
        self.simd
    }
}

//! The scan: filters, rejection counts and scores for every compute in one pass over the hot
//! columns, a block at a time so that the per-compute work is branch-free and vectorises; only
//! blocks whose best score can enter the top k are looked at one by one.

use super::hash::tie_key;
use super::view::{Hot, Prepared, AFFINE, ALIVE, ANTI_AFFINE, EXCLUDED, ZONE_ANY, ZONE_MASK};
use super::FILTER_COUNT;

const BLOCK: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Entry {
    pub score: f32,
    pub tie: u64,
    pub idx: u32,
}

/// The best k (score, tie) so far, best first.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    e: Vec<Entry>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self {
            k,
            e: Vec::with_capacity(k + 1),
        }
    }

    pub fn reset(&mut self) {
        self.e.clear();
    }

    pub fn entries(&self) -> &[Entry] {
        &self.e
    }

    #[inline]
    fn threshold(&self) -> f32 {
        if self.e.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.e[self.k - 1].score
        }
    }

    /// Offers a feasible compute; its tie key is computed only if it can enter.
    fn offer(&mut self, score: f32, idx: u32, tie: impl Fn(u32) -> u64, ids: &[String]) {
        if self.e.len() == self.k && score < self.e[self.k - 1].score {
            return;
        }
        let cand = Entry {
            score,
            tie: tie(idx),
            idx,
        };
        let pos = self
            .e
            .iter()
            .position(|x| better(&cand, x, ids))
            .unwrap_or(self.e.len());
        if pos >= self.k {
            return;
        }
        self.e.insert(pos, cand);
        self.e.truncate(self.k);
    }
}

/// Higher score, then higher tie key; equal keys mean the id hashes collided: smaller id wins.
#[inline]
pub fn better(a: &Entry, b: &Entry, ids: &[String]) -> bool {
    if a.score != b.score {
        return a.score > b.score;
    }
    if a.tie != b.tie {
        return a.tie > b.tie;
    }
    ids[a.idx as usize] < ids[b.idx as usize]
}

pub struct Columns<'a> {
    pub hot: &'a Hot,
    pub extra_labels: &'a [Vec<u32>],
    pub id_hash: &'a [u64],
    pub ids: &'a [String],
    pub w_resource: f32,
    pub w_bandwidth: f32,
}

/// Scans every compute; fills `topk` and returns how many computes survived each filter in turn.
pub fn scan(
    c: &Columns,
    p: &Prepared,
    affinity_active: bool,
    topk: &mut TopK,
) -> [u32; FILTER_COUNT] {
    // Extra label words that no column holds cannot be satisfied.
    let extra_missing = p
        .extra_labels
        .iter()
        .any(|&(w, _)| w >= c.extra_labels.len());
    let q = Query {
        need: p.need,
        zone_any: u32::from(p.zone == ZONE_ANY),
        zone: p.zone,
        labels: p.labels,
        labels_possible: u32::from(!p.labels_impossible && !extra_missing),
        affinity_off: u32::from(!affinity_active),
        w_resource: c.w_resource,
        w_bandwidth: c.w_bandwidth,
    };
    if p.extra_labels.is_empty() || extra_missing {
        scan_blocks::<false>(c, p, &q, topk)
    } else {
        scan_blocks::<true>(c, p, &q, topk)
    }
}

struct Query {
    need: [i32; 4],
    zone_any: u32,
    zone: u32,
    labels: [u32; 2],
    labels_possible: u32,
    affinity_off: u32,
    w_resource: f32,
    w_bandwidth: f32,
}

fn scan_blocks<const EXTRA: bool>(
    c: &Columns,
    p: &Prepared,
    q: &Query,
    topk: &mut TopK,
) -> [u32; FILTER_COUNT] {
    let n = c.hot.meta.len();
    let mut surv = [0u32; FILTER_COUNT];
    let mut scores = [0f32; BLOCK];
    let mut extra_ok = [1u32; BLOCK];
    let tie = |idx: u32| tie_key(p.seed, c.id_hash[idx as usize]);
    let mut start = 0;
    while start < n {
        let end = (start + BLOCK).min(n);
        if EXTRA {
            extra_ok = [1u32; BLOCK];
            for &(w, mask) in &p.extra_labels {
                let col = &c.extra_labels[w][start..end];
                for (ok, &x) in extra_ok.iter_mut().zip(col) {
                    *ok &= u32::from(x & mask == mask);
                }
            }
        }
        let s = block(c.hot, start, end, q, &extra_ok, &mut scores);
        for f in 0..FILTER_COUNT {
            surv[f] += s[f];
        }
        let mut best = f32::NEG_INFINITY;
        for &x in &scores[..end - start] {
            best = if x > best { x } else { best };
        }
        if best > f32::NEG_INFINITY && best >= topk.threshold() {
            for (j, &x) in scores[..end - start].iter().enumerate() {
                if x > f32::NEG_INFINITY && x >= topk.threshold() {
                    topk.offer(x, (start + j) as u32, tie, c.ids);
                }
            }
        }
        start = end;
    }
    surv
}

/// The per-compute work, branch-free: survivors per filter, and the score (-inf if rejected).
#[inline(always)]
fn block(
    h: &Hot,
    start: usize,
    end: usize,
    q: &Query,
    extra_ok: &[u32; BLOCK],
    out: &mut [f32; BLOCK],
) -> [u32; FILTER_COUNT] {
    let len = end - start;
    let meta = &h.meta[start..end];
    let l0 = &h.labels[0][start..end];
    let l1 = &h.labels[1][start..end];
    let a0 = &h.avail[0][start..end];
    let a1 = &h.avail[1][start..end];
    let a2 = &h.avail[2][start..end];
    let a3 = &h.avail[3][start..end];
    let i0 = &h.inv[0][start..end];
    let i1 = &h.inv[1][start..end];
    let i2 = &h.inv[2][start..end];
    let i3 = &h.inv[3][start..end];
    let xo = &extra_ok[..len];
    let out = &mut out[..len];
    let [n0, n1, n2, n3] = q.need;
    let [r0, r1] = q.labels;
    let (mut s1, mut s2, mut s3, mut s4, mut s5, mut s6, mut s7) =
        (0u32, 0u32, 0u32, 0u32, 0u32, 0u32, 0u32);
    for j in 0..len {
        let m = meta[j];
        let alive = u32::from(m & ALIVE != 0);
        let kept = u32::from(m & EXCLUDED == 0);
        let zone_ok = q.zone_any | u32::from(m & ZONE_MASK == q.zone);
        let labels_ok =
            u32::from(l0[j] & r0 == r0) & u32::from(l1[j] & r1 == r1) & q.labels_possible & xo[j];
        let affinity_ok = q.affinity_off | u32::from(m & AFFINE != 0);
        let anti_ok = u32::from(m & ANTI_AFFINE == 0);
        let fits = u32::from(a0[j] >= n0)
            & u32::from(a1[j] >= n1)
            & u32::from(a2[j] >= n2)
            & u32::from(a3[j] >= n3);
        let p1 = alive;
        let p2 = p1 & kept;
        let p3 = p2 & zone_ok;
        let p4 = p3 & labels_ok;
        let p5 = p4 & affinity_ok;
        let p6 = p5 & anti_ok;
        let p7 = p6 & fits;
        s1 += p1;
        s2 += p2;
        s3 += p3;
        s4 += p4;
        s5 += p5;
        s6 += p6;
        s7 += p7;
        // Same operations, same order as the twin: f32 products, then sums left to right.
        let f0 = a0[j].wrapping_sub(n0) as f32 * i0[j];
        let f1 = a1[j].wrapping_sub(n1) as f32 * i1[j];
        let f2 = a2[j].wrapping_sub(n2) as f32 * i2[j];
        let fb = a3[j].wrapping_sub(n3) as f32 * i3[j];
        let score = q.w_resource * ((f0 + f1) + f2) + q.w_bandwidth * fb;
        out[j] = if p7 != 0 { score } else { f32::NEG_INFINITY };
    }
    [s1, s2, s3, s4, s5, s6, s7]
}

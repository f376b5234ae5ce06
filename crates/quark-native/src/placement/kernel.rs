//! The scan: feasibility, the counts the view cannot derive, and scores for every compute in one
//! pass over the hot columns, eight computes at a time with branch-free lane code that
//! vectorises. Scores go to a small block buffer that is looked at compute by compute only if the
//! block's best can enter the top k. All meta filters (alive, excluded, zone, affinity,
//! anti-affinity) are one masked compare of the meta word; labels add two more. The scores are
//! the rule's (`rule::spread_score`, `rule::pack_score`); pack reads the label count from the
//! meta word too. The kernel is monomorphised on the policy and on whether labels are asked for
//! (a request without labels never reads them), and compiled twice: portable (SSE2) and AVX2,
//! picked at run time.

use super::columns::{label_count, Hot};
use super::filters::Query;
use super::hash::tie_key;
use super::rule::{fits_mask, left, score, Policy};
use super::topk::TopK;

const L: usize = 8;

pub struct Columns<'a> {
    pub hot: &'a Hot,
    pub id_hash: &'a [u64],
    pub ids: &'a [String],
}

/// What only a full pass can count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Computes passing every filter up to labels (only counted when labels are asked for).
    pub labels_pass: u32,
    /// Computes passing every filter: the feasible ones.
    pub feasible: u32,
}

/// Scans every compute; fills `topk`.
pub fn scan(c: &Columns, q: &Query, topk: &mut TopK, simd: bool) -> Counts {
    let labels = q.labels_active();
    let extra = !q.extra_labels.is_empty() && !q.labels_impossible;
    let pack = q.policy == Policy::Pack;
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true when the CPU reported AVX2 (see `avx2_available`).
        #[allow(unsafe_code)]
        return unsafe {
            match (pack, labels, extra) {
                (false, false, _) => run_avx2::<false, false, false>(c, q, topk),
                (false, true, false) => run_avx2::<false, true, false>(c, q, topk),
                (false, true, true) => run_avx2::<false, true, true>(c, q, topk),
                (true, false, _) => run_avx2::<true, false, false>(c, q, topk),
                (true, true, false) => run_avx2::<true, true, false>(c, q, topk),
                (true, true, true) => run_avx2::<true, true, true>(c, q, topk),
            }
        };
    }
    let _ = simd;
    match (pack, labels, extra) {
        (false, false, _) => run::<false, false, false>(c, q, topk),
        (false, true, false) => run::<false, true, false>(c, q, topk),
        (false, true, true) => run::<false, true, true>(c, q, topk),
        (true, false, _) => run::<true, false, false>(c, q, topk),
        (true, true, false) => run::<true, true, false>(c, q, topk),
        (true, true, true) => run::<true, true, true>(c, q, topk),
    }
}

/// Whether this CPU runs the AVX2 build of the kernel (and of the memory-floor scan).
pub fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn run_avx2<const PACK: bool, const LABELS: bool, const EXTRA: bool>(
    c: &Columns,
    q: &Query,
    topk: &mut TopK,
) -> Counts {
    run::<PACK, LABELS, EXTRA>(c, q, topk)
}

/// One chunk's columns, as fixed-size lane arrays.
struct Chunk<'a> {
    meta: &'a [u32; L],
    l0: &'a [u32; L],
    l1: &'a [u32; L],
    extra_ok: &'a [u32; L],
    avail: [&'a [i32; L]; 4],
    inv: [&'a [f32; L]; 4],
}

/// Computes per block: the block's scores are kept, and looked at one by one only if the block's
/// best can enter the top k.
const BLOCK: usize = 256;

/// Survivors per lane: [up to labels, all filters].
type Acc = [[u32; L]; 2];

#[inline(always)]
fn run<const PACK: bool, const LABELS: bool, const EXTRA: bool>(
    c: &Columns,
    q: &Query,
    topk: &mut TopK,
) -> Counts {
    let h = c.hot;
    let n = h.meta.len();
    // Labels >= 64 are rare: their verdict is computed up front into one more lane column.
    let extra_ok: Vec<u32> = if EXTRA {
        let mut ok = vec![!0u32; n];
        for &(w, mask) in q.extra_labels {
            for (o, &x) in ok.iter_mut().zip(&h.extra_labels[w]) {
                *o &= if x & mask == mask { !0 } else { 0 };
            }
        }
        ok
    } else {
        Vec::new()
    };
    let tie = |idx: u32| tie_key(q.seed, c.id_hash[idx as usize]);
    let ones = [!0u32; L];
    let possible = mask(!q.labels_impossible);
    let mut acc: Acc = [[0; L]; 2];

    // Whole chunks, as arrays of lanes; every column sliced to the same length.
    let meta = h.meta.as_chunks::<L>().0;
    let nc = meta.len();
    let l0 = &h.labels[0].as_chunks::<L>().0[..nc];
    let l1 = &h.labels[1].as_chunks::<L>().0[..nc];
    let xo = if EXTRA {
        &extra_ok.as_chunks::<L>().0[..nc]
    } else {
        &[][..]
    };
    let avail: [&[[i32; L]]; 4] = std::array::from_fn(|r| &h.avail[r].as_chunks::<L>().0[..nc]);
    let inv: [&[[f32; L]]; 4] = std::array::from_fn(|r| &h.inv[r].as_chunks::<L>().0[..nc]);
    let mut buf = [[0f32; L]; BLOCK / L];
    let mut b0 = 0;
    while b0 < nc {
        let b1 = (b0 + BLOCK / L).min(nc);
        let mut best = [f32::NEG_INFINITY; L];
        for i in b0..b1 {
            let ch = Chunk {
                meta: &meta[i],
                l0: if LABELS { &l0[i] } else { &ones },
                l1: if LABELS { &l1[i] } else { &ones },
                extra_ok: if EXTRA { &xo[i] } else { &ones },
                avail: [&avail[0][i], &avail[1][i], &avail[2][i], &avail[3][i]],
                inv: [&inv[0][i], &inv[1][i], &inv[2][i], &inv[3][i]],
            };
            let scores = chunk::<PACK, LABELS>(q, possible, &ch, &mut acc);
            for j in 0..L {
                // NaN (rejected) never wins: one max instruction per group of lanes.
                best[j] = if scores[j] > best[j] {
                    scores[j]
                } else {
                    best[j]
                };
            }
            buf[i - b0] = scores;
        }
        let top = best
            .iter()
            .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
        if top > f32::NEG_INFINITY && top >= topk.threshold() {
            offer_all(&buf[..b1 - b0], b0 * L, topk, &tie, c.ids);
        }
        b0 = b1;
    }
    let start = nc * L;
    if start < n {
        // The tail, padded with computes that are not alive: they pass no filter and add nothing.
        let pad = |col: &[u32]| -> [u32; L] {
            std::array::from_fn(|j| col.get(start + j).copied().unwrap_or(0))
        };
        let meta = pad(&h.meta);
        let l0 = if LABELS { pad(&h.labels[0]) } else { ones };
        let l1 = if LABELS { pad(&h.labels[1]) } else { ones };
        let xo = if EXTRA { pad(&extra_ok) } else { ones };
        let avail: [[i32; L]; 4] = std::array::from_fn(|r| {
            std::array::from_fn(|j| h.avail[r].get(start + j).copied().unwrap_or(0))
        });
        let inv: [[f32; L]; 4] = std::array::from_fn(|r| {
            std::array::from_fn(|j| h.inv[r].get(start + j).copied().unwrap_or(0.0))
        });
        let ch = Chunk {
            meta: &meta,
            l0: &l0,
            l1: &l1,
            extra_ok: &xo,
            avail: std::array::from_fn(|r| &avail[r]),
            inv: std::array::from_fn(|r| &inv[r]),
        };
        let scores = chunk::<PACK, LABELS>(q, possible, &ch, &mut acc);
        offer_all(&[scores], start, topk, &tie, c.ids);
    }
    Counts {
        labels_pass: acc[0].iter().sum(),
        feasible: acc[1].iter().sum(),
    }
}

fn offer_all(
    chunks: &[[f32; L]],
    start: usize,
    topk: &mut TopK,
    tie: &impl Fn(u32) -> u64,
    ids: &[String],
) {
    for (i, ch) in chunks.iter().enumerate() {
        for (j, &x) in ch.iter().enumerate() {
            // Rejected computes score NaN, which compares false with any threshold, -inf included.
            if x >= topk.threshold() {
                topk.offer(x, (start + i * L + j) as u32, tie, ids);
            }
        }
    }
}

#[inline(always)]
fn mask(b: bool) -> u32 {
    if b {
        !0
    } else {
        0
    }
}

/// Quiet-NaN bits: OR-ed into any f32, the result is a NaN.
const NAN_BITS: u32 = 0x7FC0_0000;

/// The per-compute work for eight computes, branch-free: lane counts of survivors and the
/// score, NaN where rejected.
#[inline(always)]
fn chunk<const PACK: bool, const LABELS: bool>(
    q: &Query,
    possible: u32,
    ch: &Chunk,
    acc: &mut Acc,
) -> [f32; L] {
    let [n0, n1, n2, n3] = q.need;
    let [r0, r1] = q.labels;
    let mut out = [0f32; L];
    for j in 0..L {
        let m = ch.meta[j];
        let all = mask(m & q.mask_all == q.want_all);
        let p6 = if LABELS {
            let labels =
                mask(ch.l0[j] & r0 == r0) & mask(ch.l1[j] & r1 == r1) & ch.extra_ok[j] & possible;
            let p4 = mask(m & q.mask_pre == q.want_pre) & labels;
            acc[0][j] = acc[0][j].wrapping_sub(p4);
            all & labels
        } else {
            all
        };
        // avail >= AVAIL_MIN and need <= NEED_MAX, so these never overflow.
        let d0 = ch.avail[0][j].wrapping_sub(n0);
        let d1 = ch.avail[1][j].wrapping_sub(n1);
        let d2 = ch.avail[2][j].wrapping_sub(n2);
        let d3 = ch.avail[3][j].wrapping_sub(n3);
        let p7 = p6 & fits_mask([d0, d1, d2, d3]);
        acc[1][j] = acc[1][j].wrapping_sub(p7);
        // The rule's scores, lane by lane (the same operations, in the same order, as the twin).
        let f = [
            left(d0, ch.inv[0][j]),
            left(d1, ch.inv[1][j]),
            left(d2, ch.inv[2][j]),
            left(d3, ch.inv[3][j]),
        ];
        let policy = if PACK { Policy::Pack } else { Policy::Spread };
        let score = score(policy, f, &q.asked, label_count(m), &q.weights);
        out[j] = f32::from_bits(score.to_bits() | (NAN_BITS & !p7));
    }
    out
}

/// Folds every word of the hot columns into a checksum: each byte read once, nothing else done.
pub fn scan_columns(h: &Hot, simd: bool) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: `simd` is only true when the CPU reported AVX2 (see `avx2_available`).
        #[allow(unsafe_code)]
        return unsafe { fold_columns_avx2(h) };
    }
    let _ = simd;
    fold_columns(h)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn fold_columns_avx2(h: &Hot) -> u32 {
    fold_columns(h)
}

#[inline(always)]
fn fold_columns(h: &Hot) -> u32 {
    let fold = |xs: &[u32]| xs.iter().fold(0u32, |a, &x| a.wrapping_add(x));
    let mut acc = 0u32;
    for r in 0..4 {
        acc = acc.wrapping_add(
            h.avail[r]
                .iter()
                .fold(0u32, |a, &x| a.wrapping_add(x as u32)),
        );
        acc = acc.wrapping_add(
            h.inv[r]
                .iter()
                .fold(0u32, |a, &x| a.wrapping_add(x.to_bits())),
        );
    }
    acc = acc.wrapping_add(fold(&h.labels[0]));
    acc = acc.wrapping_add(fold(&h.labels[1]));
    for col in &h.extra_labels {
        acc = acc.wrapping_add(fold(col));
    }
    acc.wrapping_add(fold(&h.meta))
}

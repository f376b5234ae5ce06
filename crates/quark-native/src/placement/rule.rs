//! The placement rule, written once for Rust: headroom under overcommit, the fits test and the
//! two fit scores. The view keeps its columns with these functions, the kernel scores with them
//! lane by lane, and the reference checks both against them. The TypeScript side has the same
//! rule once too (ts/common/capacity.ts for fits, ts/orc/placement/twin.ts for the scores).

use super::Error;

pub const N_RES: usize = 4;

/// Resources in contract order: vcpus, ram_mb, disk_gb, bandwidth_mbps.
pub type Res = [i64; N_RES];

pub const RES_NAMES: [&str; N_RES] = ["vcpus", "ram_mb", "disk_gb", "bandwidth_mbps"];

/// A compute's free resources are clamped to ±2^40 so that the twin's doubles stay exact.
pub const FREE_LIMIT: i64 = 1 << 40;
/// Largest need per resource; with avail >= AVAIL_MIN, `avail - need` never overflows an i32.
pub const NEED_MAX: i64 = 1 << 30;
/// Headroom is clamped to [AVAIL_MIN, i32::MAX]; below AVAIL_MIN nothing fits either way.
pub const AVAIL_MIN: i32 = -(1 << 30);
/// Per-mille overcommit ratios accepted: 0.001 .. 1000.
pub const OVERCOMMIT_PM_MAX: u32 = 1_000_000;
/// A compute's label count is kept in 8 bits; more labels count as this many.
pub const LABEL_COUNT_MAX: u32 = 255;

/// How a placement ranks the computes that pass every filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// The emptiest compute first: load evens out, a compute's loss hits fewer VMs.
    #[default]
    Spread,
    /// The fullest compute that fits first: more VMs fit before the first request fails.
    Pack,
}

/// Headroom the fits filter compares with: need <= avail  <=>  need*1000 <= free*1000 + cap*(pm-1000).
pub fn avail_of(free: i64, cap: i32, pm: u32) -> i32 {
    let n = free * 1000 + i64::from(cap) * (i64::from(pm) - 1000);
    n.div_euclid(1000)
        .clamp(i64::from(AVAIL_MIN), i64::from(i32::MAX)) as i32
}

/// The scores' normalisation: 1 / effective capacity, so a fraction of it lands in [0, 1].
pub fn inv_of(cap: i32, pm: u32) -> f32 {
    if cap == 0 {
        0.0
    } else {
        (1000.0 / (f64::from(cap) * f64::from(pm))) as f32
    }
}

/// The fits filter on what would be left, `avail - need` per resource: all of it >= 0. As a lane
/// mask (all ones or 0), the form the kernel computes eight at a time. With avail >= AVAIL_MIN and
/// need <= NEED_MAX the differences never overflow.
#[inline(always)]
pub fn fits_mask(d: [i32; N_RES]) -> u32 {
    !(((d[0] | d[1] | d[2] | d[3]) >> 31) as u32)
}

/// The fits filter: every resource's need within its headroom.
pub fn fits(need: &[i32; N_RES], avail: &[i32; N_RES]) -> bool {
    fits_mask(std::array::from_fn(|r| avail[r].wrapping_sub(need[r]))) != 0
}

pub(crate) fn check(field: &'static str, v: i64, min: i64, max: i64) -> Result<(), Error> {
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

pub fn check_need(need: &Res) -> Result<[i32; N_RES], Error> {
    let mut out = [0; N_RES];
    for r in 0..N_RES {
        check(RES_NAMES[r], need[r], 0, NEED_MAX)?;
        out[r] = need[r] as i32;
    }
    Ok(out)
}

/// The fraction of a resource's overcommitted capacity left after the placement:
/// `f32(avail - need) * inv`, in [0, 1] for a feasible pick (more if free exceeds capacity).
#[inline(always)]
pub fn left(d: i32, inv: f32) -> f32 {
    d as f32 * inv
}

/// The weights as the scores use them, already f32.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weights {
    /// f32(resource_weight / 3)
    pub resource: f32,
    /// f32(bandwidth_weight)
    pub bandwidth: f32,
    /// f32(label_weight)
    pub labels: f32,
}

/// Spread: `resource * ((f0 + f1) + f2) + bandwidth * f3`, every operation rounded to f32 as
/// written (no fused multiply-add): more headroom scores higher.
#[inline(always)]
pub fn spread_score(f: [f32; N_RES], w: &Weights) -> f32 {
    w.resource * ((f[0] + f[1]) + f[2]) + w.bandwidth * f[3]
}

/// Which resources a request asks for, as 1.0 or 0.0 per resource: pack counts only those.
pub fn asked(need: &[i32; N_RES]) -> [f32; N_RES] {
    need.map(|n| if n > 0 { 1.0 } else { 0.0 })
}

/// Pack: `-(m + labels_weight * labels)` where `m` is the largest fraction left among the
/// resources the request asks for (0 if none) and `labels` the compute's label count.
///
/// `m` is the steepest member of the family `sum of base^left` (Nomad's ScoreFitBinPack is base
/// 10 over cpu and memory): as the base grows only the resource with the most room left counts,
/// so a compute scores as full as its least used resource, and a flavour that would strand one
/// resource while filling another scores low. The label term keeps computes with hardware a
/// request does not ask for (every feasible compute has the labels it asks for, so the count
/// differs only by the ones it does not) for requests that need them.
#[inline(always)]
pub fn pack_score(f: [f32; N_RES], asked: &[f32; N_RES], labels: f32, w: &Weights) -> f32 {
    let max = |a: f32, b: f32| if b > a { b } else { a };
    let m0 = f[0] * asked[0];
    let m1 = f[1] * asked[1];
    let m2 = f[2] * asked[2];
    let m3 = f[3] * asked[3];
    let m = max(max(max(max(0.0, m0), m1), m2), m3);
    -(m + w.labels * labels)
}

/// The fit score of one feasible compute under `policy`.
#[inline(always)]
pub fn score(
    policy: Policy,
    f: [f32; N_RES],
    asked: &[f32; N_RES],
    labels: f32,
    w: &Weights,
) -> f32 {
    match policy {
        Policy::Spread => spread_score(f, w),
        Policy::Pack => pack_score(f, asked, labels, w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Weights = Weights {
        resource: 1.0 / 3.0,
        bandwidth: 0.5,
        labels: 1.0,
    };

    fn fractions(free: [i32; N_RES], need: [i32; N_RES], cap: [i32; N_RES]) -> [f32; N_RES] {
        std::array::from_fn(|r| {
            left(
                avail_of(i64::from(free[r]), cap[r], 1000) - need[r],
                inv_of(cap[r], 1000),
            )
        })
    }

    #[test]
    fn a_fuller_compute_scores_higher_in_pack_and_lower_in_spread() {
        let cap = [64, 65_536, 1000, 10_000];
        let need = [2, 2048, 20, 100];
        let a = asked(&need);
        let mut prev: Option<(f32, f32)> = None;
        // From empty to just fitting, every resource used a little more at each step.
        for used in (0..=62).step_by(2) {
            let free = [
                64 - used,
                65_536 - used * 1000,
                1000 - used * 15,
                10_000 - used * 150,
            ];
            let f = fractions(free, need, cap);
            let (p, s) = (pack_score(f, &a, 0.0, &W), spread_score(f, &W));
            if let Some((p0, s0)) = prev {
                assert!(
                    p > p0,
                    "pack must rise as the compute fills: {p0} -> {p} at {used}"
                );
                assert!(
                    s < s0,
                    "spread must fall as the compute fills: {s0} -> {s} at {used}"
                );
            }
            prev = Some((p, s));
        }
    }

    #[test]
    fn pack_scores_by_the_resource_with_most_room_and_only_those_asked() {
        let cap = [64, 65_536, 1000, 10_000];
        // Same vcpus left; the second strands half its ram: it scores lower.
        let even = fractions([10, 10_240, 156, 1562], [0; 4], cap);
        let stranded = fractions([10, 32_768, 156, 1562], [0; 4], cap);
        let all = [1.0; 4];
        assert!(pack_score(even, &all, 0.0, &W) > pack_score(stranded, &all, 0.0, &W));
        // A request that asks for no ram does not see it.
        let no_ram = [1.0, 0.0, 1.0, 1.0];
        assert_eq!(
            pack_score(even, &no_ram, 0.0, &W),
            pack_score(stranded, &no_ram, 0.0, &W)
        );
    }

    #[test]
    fn pack_keeps_labelled_computes_for_requests_that_need_them() {
        let f = [0.5, 0.5, 0.5, 0.5];
        let all = [1.0; 4];
        assert!(pack_score(f, &all, 0.0, &W) > pack_score(f, &all, 1.0, &W));
        let none = Weights { labels: 0.0, ..W };
        assert_eq!(
            pack_score(f, &all, 0.0, &none),
            pack_score(f, &all, 3.0, &none)
        );
    }

    #[test]
    fn fits_is_need_within_headroom_with_overcommit() {
        // 10 vcpus at 1.5x, all used: 5 more fit, 6 do not.
        let avail = avail_of(0, 10, 1500);
        assert_eq!(avail, 5);
        assert!(fits(&[5, 0, 0, 0], &[avail, 0, 0, 0]));
        assert!(!fits(&[6, 0, 0, 0], &[avail, 0, 0, 0]));
        assert_eq!(avail_of(-1, 0, 1000), -1);
        assert_eq!(avail_of(i64::from(i32::MIN), 0, 1000), AVAIL_MIN);
    }
}

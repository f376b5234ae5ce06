use proptest::prelude::*;

use super::reference::Reference;
use super::*;

fn compute(id: &str, cap: [i64; 4], free: [i64; 4]) -> Compute {
    Compute {
        id: id.into(),
        capacity: cap,
        free,
        zone: "z1".into(),
        labels: vec![],
        alive: true,
        groups: vec![],
    }
}

fn req(id: &str, need: [i64; 4]) -> Request {
    Request {
        id: id.into(),
        need,
        ..Request::default()
    }
}

fn view() -> ClusterView {
    ClusterView::new(Options::default()).unwrap()
}

fn pack_view(label_weight: f64) -> ClusterView {
    ClusterView::new(Options {
        policy: Policy::Pack,
        label_weight,
        ..Options::default()
    })
    .unwrap()
}

fn picks(v: &ClusterView, o: &Outcome) -> Vec<String> {
    o.picks
        .iter()
        .map(|&i| v.id_at(i).unwrap().to_owned())
        .collect()
}

fn place_ids(v: &mut ClusterView, r: &Request) -> Vec<String> {
    let o = v.place(r).unwrap();
    picks(v, &o)
}

const BIG: [i64; 4] = [64, 262_144, 2000, 10_000];

#[test]
fn fits_respects_each_resource_and_counts_rejections() {
    let mut v = view();
    v.upsert(&compute("a", BIG, [4, 8192, 100, 1000])).unwrap();
    v.upsert(&compute("b", BIG, [1, 8192, 100, 1000])).unwrap();
    v.upsert(&compute("c", BIG, [4, 8192, 100, 10])).unwrap();
    let o = v.place(&req("wu", [2, 4096, 50, 100])).unwrap();
    assert_eq!(picks(&v, &o), vec!["a"]);
    assert_eq!(o.rejected_by(Filter::Fits), 2);
    assert_eq!(o.considered, 3);
}

#[test]
fn fits_is_exact_at_the_boundary() {
    let mut v = view();
    v.upsert(&compute("a", BIG, [2, 4096, 50, 100])).unwrap();
    assert_eq!(
        v.place(&req("wu", [2, 4096, 50, 100])).unwrap().picks.len(),
        1
    );
    assert_eq!(
        v.place(&req("wu", [3, 4096, 50, 100])).unwrap().picks.len(),
        0
    );
}

#[test]
fn overcommit_allows_use_up_to_capacity_times_ratio() {
    // vcpus 1.5x: a 10-vcpu compute can carry 15; with 10 used, 5 more fit, 6 do not.
    let opts = Options {
        overcommit_pm: [1500, 1000, 1000, 1000],
        ..Options::default()
    };
    let mut v = ClusterView::new(opts).unwrap();
    v.upsert(&compute("a", [10, 1000, 100, 100], [0, 1000, 100, 100]))
        .unwrap();
    assert_eq!(v.place(&req("wu", [5, 0, 0, 0])).unwrap().picks.len(), 1);
    assert_eq!(v.place(&req("wu", [6, 0, 0, 0])).unwrap().picks.len(), 0);
    // A fractional allowance rounds down: 1.0005 * 1 vcpu allows nothing extra.
    let opts = Options {
        overcommit_pm: [1001, 1000, 1000, 1000],
        ..Options::default()
    };
    let mut v = ClusterView::new(opts).unwrap();
    v.upsert(&compute("a", [999, 1000, 100, 100], [0, 1000, 100, 100]))
        .unwrap();
    assert_eq!(v.place(&req("wu", [1, 0, 0, 0])).unwrap().picks.len(), 0);
    v.upsert(&compute("a", [1000, 1000, 100, 100], [0, 1000, 100, 100]))
        .unwrap();
    assert_eq!(v.place(&req("wu", [1, 0, 0, 0])).unwrap().picks.len(), 1);
}

#[test]
fn alive_filter_runs_first() {
    let mut v = view();
    let mut c = compute("a", BIG, BIG);
    c.alive = false;
    c.zone = "elsewhere".into();
    v.upsert(&c).unwrap();
    let mut r = req("wu", [1, 1, 1, 1]);
    r.zone = Some("z1".into());
    let o = v.place(&r).unwrap();
    assert_eq!(o.rejected_by(Filter::Alive), 1);
    assert_eq!(o.rejected_by(Filter::Zone), 0);
    v.set_alive("a", true).unwrap();
    assert_eq!(v.place(&r).unwrap().rejected_by(Filter::Zone), 1);
}

#[test]
fn excluded_computes_are_skipped_and_the_mark_does_not_stick() {
    let mut v = view();
    v.upsert(&compute("a", BIG, BIG)).unwrap();
    v.upsert(&compute("b", BIG, [1, 1, 1, 1])).unwrap();
    let mut r = req("wu", [1, 1, 1, 1]);
    r.exclude = vec!["a".into(), "nope".into()];
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["b"]);
    assert_eq!(o.rejected_by(Filter::Excluded), 1);
    let o = v.place(&req("wu", [1, 1, 1, 1])).unwrap();
    assert_eq!(o.rejected_by(Filter::Excluded), 0);
    assert_eq!(picks(&v, &o)[0], "a");
}

#[test]
fn zone_filter_and_unknown_zone() {
    let mut v = view();
    v.upsert(&compute("a", BIG, BIG)).unwrap();
    let mut c = compute("b", BIG, BIG);
    c.zone = "z2".into();
    v.upsert(&c).unwrap();
    let mut r = req("wu", [1, 1, 1, 1]);
    r.zone = Some("z2".into());
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["b"]);
    assert_eq!(o.rejected_by(Filter::Zone), 1);
    r.zone = Some("mars".into());
    assert_eq!(v.place(&r).unwrap().rejected_by(Filter::Zone), 2);
}

#[test]
fn labels_must_all_be_present_including_beyond_64() {
    let mut v = view();
    let mut a = compute("a", BIG, BIG);
    a.labels = (0..70).map(|i| format!("l{i}")).collect();
    v.upsert(&a).unwrap();
    let mut b = compute("b", BIG, BIG);
    b.labels = vec!["l1".into(), "l2".into()];
    v.upsert(&b).unwrap();
    assert_eq!(v.hot_bytes_per_node(), 48);
    let mut r = req("wu", [1, 1, 1, 1]);
    r.labels = vec!["l1".into(), "l2".into()];
    assert_eq!(v.place(&r).unwrap().picks.len(), 2);
    r.labels = vec!["l1".into(), "l69".into()];
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["a"]);
    assert_eq!(o.rejected_by(Filter::Labels), 1);
    r.labels = vec!["never-seen".into()];
    assert_eq!(v.place(&r).unwrap().rejected_by(Filter::Labels), 2);
}

#[test]
fn affinity_prefers_hosts_of_the_group_only_when_one_is_alive() {
    let mut v = view();
    v.upsert(&compute("a", BIG, BIG)).unwrap();
    let mut b = compute("b", BIG, [2, 2, 2, 2]);
    b.groups = vec!["g".into()];
    v.upsert(&b).unwrap();
    let mut r = req("wu", [1, 1, 1, 1]);
    r.affinity = Some("g".into());
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["b"]);
    assert_eq!(o.rejected_by(Filter::Affinity), 1);
    v.set_alive("b", false).unwrap();
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["a"]);
    assert_eq!(o.rejected_by(Filter::Affinity), 0);
    r.affinity = Some("unknown".into());
    assert_eq!(place_ids(&mut v, &r), vec!["a"]);
}

#[test]
fn anti_affinity_rejects_hosts_of_the_group() {
    let mut v = view();
    let mut a = compute("a", BIG, BIG);
    a.groups = vec!["g".into(), "h".into()];
    v.upsert(&a).unwrap();
    v.upsert(&compute("b", BIG, [2, 2, 2, 2])).unwrap();
    let mut r = req("wu", [1, 1, 1, 1]);
    r.anti_affinity = Some("g".into());
    let o = v.place(&r).unwrap();
    assert_eq!(picks(&v, &o), vec!["b"]);
    assert_eq!(o.rejected_by(Filter::AntiAffinity), 1);
    v.set_groups("a", &["h".into()]).unwrap();
    assert_eq!(place_ids(&mut v, &r)[0], "a");
}

#[test]
fn spread_prefers_the_emptiest_and_pack_the_fullest() {
    let mut v = view();
    v.upsert(&compute("empty", BIG, BIG)).unwrap();
    v.upsert(&compute("half", BIG, [32, 131_072, 1000, 10_000]))
        .unwrap();
    let r = req("wu", [1, 1, 1, 1]);
    assert_eq!(place_ids(&mut v, &r), vec!["empty", "half"]);
    let mut p = pack_view(1.0);
    p.upsert(&compute("empty", BIG, BIG)).unwrap();
    p.upsert(&compute("half", BIG, [32, 131_072, 1000, 10_000]))
        .unwrap();
    assert_eq!(place_ids(&mut p, &r), vec!["half", "empty"]);
    // A request's own policy wins over the view's.
    let mut spread_here = r.clone();
    spread_here.policy = Some(Policy::Spread);
    assert_eq!(place_ids(&mut p, &spread_here), vec!["empty", "half"]);
    let mut pack_here = r;
    pack_here.policy = Some(Policy::Pack);
    assert_eq!(place_ids(&mut v, &pack_here), vec!["half", "empty"]);
}

#[test]
fn pack_keeps_labelled_computes_for_requests_that_ask_for_their_labels() {
    let mut v = pack_view(1.0);
    let mut ssd = compute("ssd", BIG, [8, 32_768, 200, 1000]);
    ssd.labels = vec!["ssd".into(), "ssd".into()];
    v.upsert(&ssd).unwrap();
    v.upsert(&compute("plain", BIG, [32, 131_072, 1000, 5000]))
        .unwrap();
    // The plain compute is emptier, but the ssd one is kept for requests that need an ssd.
    assert_eq!(place_ids(&mut v, &req("wu", [1, 1, 1, 1]))[0], "plain");
    let mut r = req("wu", [1, 1, 1, 1]);
    r.labels = vec!["ssd".into()];
    assert_eq!(place_ids(&mut v, &r), vec!["ssd"]);
    // Without the label weight, the fuller compute wins.
    let mut w = pack_view(0.0);
    w.upsert(&ssd).unwrap();
    w.upsert(&compute("plain", BIG, [32, 131_072, 1000, 5000]))
        .unwrap();
    assert_eq!(place_ids(&mut w, &req("wu", [1, 1, 1, 1]))[0], "ssd");
}

#[test]
fn pack_fills_the_compute_whose_least_used_resource_is_fullest() {
    let mut v = pack_view(1.0);
    // Same vcpus free; "stranded" has most of its ram left, "even" does not.
    v.upsert(&compute("stranded", BIG, [8, 200_000, 250, 1250]))
        .unwrap();
    v.upsert(&compute("even", BIG, [8, 32_768, 250, 1250]))
        .unwrap();
    assert_eq!(place_ids(&mut v, &req("wu", [1, 1, 1, 1]))[0], "even");
    // A request that asks for no ram does not weigh it: the tie key decides, both orders occur.
    let firsts: std::collections::HashSet<String> = (0..32)
        .map(|i| place_ids(&mut v, &req(&format!("wu-{i}"), [1, 0, 1, 1]))[0].clone())
        .collect();
    assert_eq!(firsts.len(), 2);
}

#[test]
fn bandwidth_weigher_breaks_an_otherwise_even_race() {
    let mut v = view();
    v.upsert(&compute("thin", BIG, [64, 262_144, 2000, 100]))
        .unwrap();
    v.upsert(&compute("wide", BIG, [64, 262_144, 2000, 9000]))
        .unwrap();
    assert_eq!(place_ids(&mut v, &req("wu", [1, 1, 1, 1]))[0], "wide");
    // With no bandwidth weight the two tie and the tie key decides; both orders must occur.
    let opts = Options {
        bandwidth_weight: 0.0,
        ..Options::default()
    };
    let mut v = ClusterView::new(opts).unwrap();
    v.upsert(&compute("thin", BIG, [64, 262_144, 2000, 100]))
        .unwrap();
    v.upsert(&compute("wide", BIG, [64, 262_144, 2000, 9000]))
        .unwrap();
    let firsts: std::collections::HashSet<String> = (0..32)
        .map(|i| place_ids(&mut v, &req(&format!("wu-{i}"), [1, 1, 1, 1]))[0].clone())
        .collect();
    assert_eq!(firsts.len(), 2);
}

#[test]
fn resource_weight_and_bandwidth_weight_trade_off() {
    // "cpu" has more vcpu headroom, "net" more bandwidth; the weights decide.
    let mk = |w_r: f64, w_b: f64| {
        let opts = Options {
            resource_weight: w_r,
            bandwidth_weight: w_b,
            ..Options::default()
        };
        let mut v = ClusterView::new(opts).unwrap();
        v.upsert(&compute("cpu", BIG, [64, 262_144, 2000, 1000]))
            .unwrap();
        v.upsert(&compute("net", BIG, [8, 262_144, 2000, 10_000]))
            .unwrap();
        let o = v.place(&req("wu", [1, 1, 1, 1])).unwrap();
        picks(&v, &o)[0].clone()
    };
    assert_eq!(mk(1.0, 0.0), "cpu");
    assert_eq!(mk(0.0, 1.0), "net");
}

#[test]
fn ties_replay_identically_for_the_same_request() {
    let mut v = view();
    for i in 0..50 {
        v.upsert(&compute(&format!("c{i}"), BIG, BIG)).unwrap();
    }
    let a = v.place(&req("wu-7", [1, 1, 1, 1])).unwrap();
    let b = v.place(&req("wu-7", [1, 1, 1, 1])).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.picks.len(), 4);
}

#[test]
fn remove_swaps_the_last_compute_in_and_keeps_groups_right() {
    let mut v = view();
    for (i, g) in ["g", "h", "g"].iter().enumerate() {
        let mut c = compute(&format!("c{i}"), BIG, BIG);
        c.groups = vec![(*g).into()];
        v.upsert(&c).unwrap();
    }
    assert_eq!(v.remove("c0"), Some((0, Some(2))));
    assert_eq!(v.index_of("c2"), Some(0));
    let mut r = req("wu", [1, 1, 1, 1]);
    r.anti_affinity = Some("g".into());
    assert_eq!(place_ids(&mut v, &r), vec!["c1"]);
    assert_eq!(v.remove("nope"), None);
    assert_eq!(v.remove("c1"), Some((1, None)));
    assert_eq!(v.len(), 1);
}

#[test]
fn batch_consumes_capacity_for_the_next_request() {
    let mut v = view();
    v.upsert(&compute("a", [4, 4096, 100, 100], [4, 4096, 100, 100]))
        .unwrap();
    let p = v.prepare(&req("wu", [2, 1024, 10, 10])).unwrap();
    let mut outs = Vec::new();
    v.place_batch(&[p.clone(), p.clone(), p], &mut outs);
    assert_eq!(
        outs.iter().map(|o| o.picks.len()).collect::<Vec<_>>(),
        vec![1, 1, 0]
    );
    assert_eq!(outs[2].rejected_by(Filter::Fits), 1);
    assert_eq!(v.free_at(0).unwrap()[0], 0);
}

#[test]
fn claims_apply_and_release() {
    let mut v = view();
    v.upsert(&compute("a", BIG, [4, 4096, 100, 100])).unwrap();
    v.apply_claim("a", &[4, 0, 0, 0]).unwrap();
    assert_eq!(v.place(&req("wu", [1, 0, 0, 0])).unwrap().picks.len(), 0);
    v.release_claim("a", &[1, 0, 0, 0]).unwrap();
    assert_eq!(v.place(&req("wu", [1, 0, 0, 0])).unwrap().picks.len(), 1);
    assert!(v.apply_claim("nope", &[1, 0, 0, 0]).is_err());
    assert!(v.apply_claim("a", &[-1, 0, 0, 0]).is_err());
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut v = view();
    assert!(v.upsert(&compute("a", [-1, 0, 0, 0], [0; 4])).is_err());
    assert!(v.upsert(&compute("a", [1 << 31, 0, 0, 0], [0; 4])).is_err());
    assert!(v.place(&req("wu", [-1, 0, 0, 0])).is_err());
    assert!(ClusterView::new(Options {
        overcommit_pm: [0, 1000, 1000, 1000],
        ..Options::default()
    })
    .is_err());
    assert!(ClusterView::new(Options {
        resource_weight: f64::NAN,
        ..Options::default()
    })
    .is_err());
    assert!(v.is_empty());
}

#[test]
fn empty_view_has_no_valid_host() {
    let mut v = view();
    let o = v.place(&req("wu", [1, 1, 1, 1])).unwrap();
    assert_eq!(
        o,
        Outcome {
            picks: vec![],
            considered: 0,
            rejected: [0; FILTER_COUNT]
        }
    );
}

#[test]
fn scan_columns_reads_the_hot_columns() {
    let mut v = view();
    assert_eq!(v.scan_columns(), 0);
    v.upsert(&compute("a", BIG, [1, 0, 0, 0])).unwrap();
    assert_ne!(v.scan_columns(), 0);
    assert_eq!(v.hot_bytes_per_node(), 44);
}

// ---- properties: the columnar view against the naive reference ----

const ZONES: [&str; 3] = ["z1", "z2", "z3"];
const LABELS: [&str; 5] = ["ssd", "gpu", "sriov", "arm", "nvme"];
const GROUPS: [&str; 4] = ["g1", "g2", "g3", "g4"];

fn arb_res(max: [i64; 4]) -> impl Strategy<Value = [i64; 4]> {
    (0..=max[0], 0..=max[1], 0..=max[2], 0..=max[3]).prop_map(|(a, b, c, d)| [a, b, c, d])
}

fn arb_compute(n_ids: usize) -> impl Strategy<Value = Compute> {
    (
        0..n_ids,
        arb_res([16, 4096, 200, 1000]),
        any::<[u16; 4]>(),
        0..ZONES.len(),
        proptest::collection::vec(0..LABELS.len(), 0..3),
        proptest::bool::weighted(0.9),
        proptest::collection::vec(0..GROUPS.len(), 0..2),
    )
        .prop_map(|(id, cap, frac, zone, labels, alive, groups)| {
            // Free mostly within capacity; sometimes negative (already overcommitted).
            let free = std::array::from_fn(|r| {
                cap[r] * i64::from(frac[r] % 1200) / 1000 - i64::from(frac[r] % 7 == 0) * 3
            });
            Compute {
                id: format!("compute-{id}"),
                capacity: cap,
                free,
                zone: ZONES[zone].into(),
                labels: labels.into_iter().map(|l| LABELS[l].into()).collect(),
                alive,
                groups: groups.into_iter().map(|g| GROUPS[g].into()).collect(),
            }
        })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    prop_oneof![Just(Policy::Spread), Just(Policy::Pack)]
}

fn arb_request(n_ids: usize) -> impl Strategy<Value = Request> {
    (
        proptest::option::weighted(0.3, arb_policy()),
        any::<u32>(),
        arb_res([6, 1500, 80, 400]),
        proptest::option::weighted(0.3, 0..ZONES.len() + 1),
        proptest::collection::vec(0..LABELS.len() + 1, 0..2),
        proptest::option::weighted(0.2, 0..GROUPS.len() + 1),
        proptest::option::weighted(0.2, 0..GROUPS.len() + 1),
        proptest::collection::vec(0..n_ids, 0..3),
    )
        .prop_map(|(policy, id, need, zone, labels, aff, anti, exclude)| {
            let name =
                |xs: &[&str], i: usize| xs.get(i).map_or("unknown".to_owned(), |s| (*s).to_owned());
            Request {
                id: format!("wu-{id}"),
                need,
                zone: zone.map(|z| name(&ZONES, z)),
                labels: labels.into_iter().map(|l| name(&LABELS, l)).collect(),
                affinity: aff.map(|g| name(&GROUPS, g)),
                anti_affinity: anti.map(|g| name(&GROUPS, g)),
                exclude: exclude
                    .into_iter()
                    .map(|i| format!("compute-{i}"))
                    .collect(),
                policy,
            }
        })
}

#[derive(Debug, Clone)]
enum Op {
    Upsert(Compute),
    Remove(usize),
    Claim(usize, [i64; 4], bool),
}

fn arb_ops(n_ids: usize) -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        6 => arb_compute(n_ids).prop_map(Op::Upsert),
        1 => (0..n_ids).prop_map(Op::Remove),
        2 => (0..n_ids, arb_res([4, 1024, 50, 200]), any::<bool>()).prop_map(|(i, n, apply)| Op::Claim(i, n, apply)),
    ];
    proptest::collection::vec(op, 0..250)
}

fn arb_options() -> impl Strategy<Value = Options> {
    (
        proptest::array::uniform4(prop_oneof![Just(1000u32), 500u32..4000]),
        arb_policy(),
        prop_oneof![Just(1.0), 0.0..3.0f64],
        prop_oneof![Just(0.5), 0.0..3.0f64],
        prop_oneof![Just(1.0), Just(0.0), 0.0..3.0f64],
        0u32..5,
    )
        .prop_map(
            |(
                overcommit_pm,
                policy,
                resource_weight,
                bandwidth_weight,
                label_weight,
                alternates,
            )| {
                Options {
                    overcommit_pm,
                    policy,
                    resource_weight,
                    bandwidth_weight,
                    label_weight,
                    alternates,
                }
            },
        )
}

fn build(opts: &Options, ops: &[Op]) -> (ClusterView, Reference) {
    let mut v = ClusterView::new(opts.clone()).unwrap();
    let mut r = Reference {
        opts: opts.clone(),
        computes: Vec::new(),
    };
    for op in ops {
        match op {
            Op::Upsert(c) => {
                v.upsert(c).unwrap();
                r.upsert(c.clone());
            }
            Op::Remove(i) => {
                let id = format!("compute-{i}");
                v.remove(&id);
                r.remove(&id);
            }
            Op::Claim(i, need, apply) => {
                let id = format!("compute-{i}");
                let sign = if *apply { -1 } else { 1 };
                if let Some(idx) = v.index_of(&id) {
                    v.apply_claim_at(idx, need, sign).unwrap();
                }
                r.claim(&id, need, sign);
            }
        }
    }
    (v, r)
}

fn fits(v: &ClusterView, idx: u32, need: &[i64; 4]) -> bool {
    let cap = v.capacity_at(idx).unwrap();
    let free = v.free_at(idx).unwrap();
    (0..4).all(|r| {
        need[r] * 1000
            <= free[r] * 1000 + i64::from(cap[r]) * (i64::from(v.options().overcommit_pm[r]) - 1000)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn view_agrees_with_the_reference(opts in arb_options(), ops in arb_ops(40), reqs in proptest::collection::vec(arb_request(40), 1..8)) {
        let (mut v, r) = build(&opts, &ops);
        prop_assert_eq!(v.len(), r.computes.len());
        let mut portable = v.clone();
        portable.set_simd(false);
        for q in &reqs {
            let o = v.place(q).unwrap();
            prop_assert_eq!(&portable.place(q).unwrap(), &o, "portable and AVX2 builds differ");
            let want = r.place(q);
            prop_assert_eq!(picks(&v, &o), want.picks);
            prop_assert_eq!(o.considered, want.considered);
            prop_assert_eq!(o.rejected, want.rejected);
            let rejected: u32 = o.rejected.iter().sum();
            prop_assert!(rejected + o.picks.len() as u32 <= o.considered);
            prop_assert_eq!(o.picks.is_empty(), rejected == o.considered);
            for &p in &o.picks {
                prop_assert!(fits(&v, p, &q.need), "infeasible pick");
            }
        }
    }

    #[test]
    fn batch_never_overcommits(opts in arb_options(), ops in arb_ops(30), reqs in proptest::collection::vec(arb_request(30), 1..60)) {
        let (mut v, mut r) = build(&opts, &ops);
        let prepared: Vec<Prepared> = reqs.iter().map(|q| v.prepare(q).unwrap()).collect();
        let before: Vec<(String, Res)> = (0..v.len() as u32).map(|i| (v.id_at(i).unwrap().to_owned(), v.free_at(i).unwrap())).collect();
        let mut outs = Vec::new();
        v.place_batch(&prepared, &mut outs);
        // Replaying the batch one request at a time on the reference gives the same answers.
        for (q, o) in reqs.iter().zip(&outs) {
            let want = r.place(q);
            prop_assert_eq!(picks(&v, o), want.picks.clone());
            prop_assert_eq!(o.rejected, want.rejected);
            if let Some(best) = want.picks.first() {
                r.claim(best, &q.need, -1);
            }
        }
        // Per compute: what the batch took fits in the usable headroom it had before.
        for (id, free0) in before {
            let idx = v.index_of(&id).unwrap();
            let cap = v.capacity_at(idx).unwrap();
            let mut taken = [0i64; 4];
            for (q, o) in reqs.iter().zip(&outs) {
                if o.best() == Some(idx) {
                    for (t, n) in taken.iter_mut().zip(q.need) {
                        *t += n;
                    }
                }
            }
            if taken.iter().any(|&t| t > 0) {
                for k in 0..4 {
                    let allowed = free0[k] * 1000 + i64::from(cap[k]) * (i64::from(opts.overcommit_pm[k]) - 1000);
                    prop_assert!(taken[k] * 1000 <= allowed, "compute {} over-committed on resource {}", id, k);
                }
            }
        }
    }
}

//! A deliberately naive scorer over plain records: one compute at a time, the filters as written
//! in the module's doc comment, a full sort for the ranking, and the rule's own functions for
//! headroom, fits and the scores. Property tests check the columnar view (its marks, counts,
//! lanes, top k and swap-removal) against it.

use super::hash::{fnv1a64, tie_key};
use super::rule::{self, Policy, Weights, LABEL_COUNT_MAX};
use super::{Compute, Options, Request, FILTER_COUNT, FREE_LIMIT, N_RES};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefOutcome {
    pub picks: Vec<String>,
    pub considered: u32,
    pub rejected: [u32; FILTER_COUNT],
}

pub struct Reference {
    pub opts: Options,
    pub computes: Vec<Compute>,
}

impl Reference {
    pub fn upsert(&mut self, c: Compute) {
        match self.computes.iter_mut().find(|x| x.id == c.id) {
            Some(x) => *x = c,
            None => self.computes.push(c),
        }
    }

    pub fn remove(&mut self, id: &str) {
        self.computes.retain(|c| c.id != id);
    }

    pub fn claim(&mut self, id: &str, need: &[i64; N_RES], sign: i64) {
        if let Some(c) = self.computes.iter_mut().find(|x| x.id == id) {
            for (f, n) in c.free.iter_mut().zip(need) {
                *f = (*f + sign * n).clamp(-FREE_LIMIT, FREE_LIMIT);
            }
        }
    }

    fn avail(&self, c: &Compute) -> [i32; N_RES] {
        std::array::from_fn(|r| {
            rule::avail_of(c.free[r], c.capacity[r] as i32, self.opts.overcommit_pm[r])
        })
    }

    fn score(&self, c: &Compute, need: &[i32; N_RES], policy: Policy) -> f32 {
        let avail = self.avail(c);
        let f = std::array::from_fn(|r| {
            let inv = rule::inv_of(c.capacity[r] as i32, self.opts.overcommit_pm[r]);
            rule::left(avail[r] - need[r], inv)
        });
        let w: Weights = self.opts.validate().unwrap();
        let mut labels = c.labels.clone();
        labels.sort();
        labels.dedup();
        let count = (labels.len() as u32).min(LABEL_COUNT_MAX) as f32;
        rule::score(policy, f, &rule::asked(need), count, &w)
    }

    pub fn place(&self, req: &Request) -> RefOutcome {
        let need = rule::check_need(&req.need).unwrap();
        let policy = req.policy.unwrap_or(self.opts.policy);
        let mut rejected = [0u32; FILTER_COUNT];
        let hosts =
            |c: &Compute, g: &Option<String>| g.as_ref().is_some_and(|g| c.groups.contains(g));
        let affinity_active = req.affinity.is_some()
            && self
                .computes
                .iter()
                .any(|c| c.alive && hosts(c, &req.affinity));
        let mut feasible: Vec<(f32, u64, &str)> = Vec::new();
        let seed = fnv1a64(&req.id);
        for c in &self.computes {
            let checks = [
                c.alive,
                !req.exclude.contains(&c.id),
                req.zone.as_ref().is_none_or(|z| *z == c.zone),
                req.labels.iter().all(|l| c.labels.contains(l)),
                !affinity_active || hosts(c, &req.affinity),
                !hosts(c, &req.anti_affinity),
                rule::fits(&need, &self.avail(c)),
            ];
            match checks.iter().position(|ok| !ok) {
                Some(f) => rejected[f] += 1,
                None => feasible.push((
                    self.score(c, &need, policy),
                    tie_key(seed, fnv1a64(&c.id)),
                    &c.id,
                )),
            }
        }
        feasible.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap()
                .then(b.1.cmp(&a.1))
                .then(a.2.cmp(b.2))
        });
        RefOutcome {
            picks: feasible
                .iter()
                .take(self.opts.alternates as usize + 1)
                .map(|x| x.2.to_owned())
                .collect(),
            considered: self.computes.len() as u32,
            rejected,
        }
    }
}

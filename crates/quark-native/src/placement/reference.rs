//! A deliberately naive scorer over plain records, written from the module's doc comment:
//! one compute at a time, exact i128 arithmetic for fits, a full sort for the ranking.
//! Property tests check the columnar view against it.

use super::hash::{fnv1a64, tie_key};
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

    fn fits(&self, c: &Compute, need: &[i64; N_RES]) -> bool {
        (0..N_RES).all(|r| {
            let pm = i128::from(self.opts.overcommit_pm[r]);
            let lhs = i128::from(need[r]) * 1000;
            let rhs = i128::from(c.free[r]) * 1000 + i128::from(c.capacity[r]) * (pm - 1000);
            // The view clamps avail to i32; a need is at most i32::MAX, so that clamp is harmless
            // except for avail below i32::MIN, where nothing fits either way.
            lhs <= rhs
        })
    }

    fn score(&self, c: &Compute, need: &[i64; N_RES]) -> f32 {
        let f = |r: usize| {
            let pm = self.opts.overcommit_pm[r];
            let cap = c.capacity[r] as i32;
            let avail = super::avail_of(c.free[r], cap, pm);
            (avail - need[r] as i32) as f32 * super::inv_of(cap, pm)
        };
        let signed = if self.opts.pack {
            -self.opts.resource_weight
        } else {
            self.opts.resource_weight
        };
        let wr = (signed / 3.0) as f32;
        let wb = self.opts.bandwidth_weight as f32;
        wr * ((f(0) + f(1)) + f(2)) + wb * f(3)
    }

    pub fn place(&self, req: &Request) -> RefOutcome {
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
                self.fits(c, &req.need),
            ];
            match checks.iter().position(|ok| !ok) {
                Some(f) => rejected[f] += 1,
                None => feasible.push((
                    self.score(c, &req.need),
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

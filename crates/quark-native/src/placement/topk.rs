//! The best k candidates of one scan, best first.

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
    pub fn threshold(&self) -> f32 {
        if self.e.len() < self.k {
            f32::NEG_INFINITY
        } else {
            self.e[self.k - 1].score
        }
    }

    /// Offers a feasible compute; its tie key is computed only if it can enter.
    pub fn offer(&mut self, score: f32, idx: u32, tie: impl Fn(u32) -> u64, ids: &[String]) {
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

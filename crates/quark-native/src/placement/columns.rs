//! The hot columns every scan reads, one entry per compute at its dense index, and the layout of
//! the `meta` word. The view owns them and the kernel reads them; neither depends on the other.

use super::rule::{avail_of, inv_of, Res, LABEL_COUNT_MAX, N_RES};

// The `meta` column: zone id in the low 16 bits, the compute's label count in the next 8, then
// flags in the top bits so that an arithmetic shift turns each into a lane mask.
pub const ZONE_MASK: u32 = 0xFFFF;
pub const LABEL_COUNT_SHIFT: u32 = 16;
pub const LABEL_COUNT_MASK: u32 = 0xFF << LABEL_COUNT_SHIFT;
pub const ALIVE: u32 = 1 << 31;
/// Transient marks, set for one request and cleared after it.
pub const EXCLUDED: u32 = 1 << 30;
pub const AFFINE: u32 = 1 << 29;
pub const ANTI_AFFINE: u32 = 1 << 28;
/// Request zone meaning "any zone".
pub const ZONE_ANY: u32 = 0;
/// Request zone that no compute has (an unknown name): matches nothing.
pub const ZONE_NONE: u32 = ZONE_MASK + 1;
/// Label ids below this live in the two 32-bit label words; the rest in extra word columns.
pub const INLINE_LABELS: u32 = 64;

/// The meta word of a compute (without transient marks).
pub fn meta_of(zone: u32, label_count: usize, alive: bool) -> u32 {
    let labels = (label_count as u32).min(LABEL_COUNT_MAX);
    zone | (labels << LABEL_COUNT_SHIFT) | if alive { ALIVE } else { 0 }
}

/// The label count a meta word carries, as the pack score reads it.
#[inline(always)]
pub fn label_count(meta: u32) -> f32 {
    ((meta & LABEL_COUNT_MASK) >> LABEL_COUNT_SHIFT) as f32
}

/// Hot columns: what the scan reads for every compute (see `bytes_per_node`).
#[derive(Debug, Clone, Default)]
pub struct Hot {
    /// Usable headroom: `avail_of(free, capacity, pm)`.
    pub avail: [Vec<i32>; N_RES],
    /// `inv_of(capacity, pm)`: 1 / (capacity * pm / 1000) as f32; 0 when capacity is 0.
    pub inv: [Vec<f32>; N_RES],
    pub labels: [Vec<u32>; 2],
    pub meta: Vec<u32>,
    /// Label words 2.. (labels with ids >= 64), one column per word; empty while unused.
    pub extra_labels: Vec<Vec<u32>>,
}

impl Hot {
    /// Bytes per compute of the columns every scan reads.
    pub fn bytes_per_node(&self) -> usize {
        N_RES * 4 + N_RES * 4 + 2 * 4 + 4 + self.extra_labels.len() * 4
    }

    /// Appends an empty, not alive compute.
    pub fn push_blank(&mut self) {
        for r in 0..N_RES {
            self.avail[r].push(0);
            self.inv[r].push(0.0);
        }
        self.labels[0].push(0);
        self.labels[1].push(0);
        for col in &mut self.extra_labels {
            col.push(0);
        }
        self.meta.push(0);
    }

    /// Removes index `i`, moving the last compute into it.
    pub fn swap_remove(&mut self, i: usize) {
        for r in 0..N_RES {
            self.avail[r].swap_remove(i);
            self.inv[r].swap_remove(i);
        }
        self.labels[0].swap_remove(i);
        self.labels[1].swap_remove(i);
        for col in &mut self.extra_labels {
            col.swap_remove(i);
        }
        self.meta.swap_remove(i);
    }

    /// Recomputes a compute's headroom and normalisation from its free and capacity.
    pub fn set_resources(&mut self, i: usize, free: &Res, cap: &[i32; N_RES], pm: &[u32; N_RES]) {
        for r in 0..N_RES {
            self.avail[r][i] = avail_of(free[r], cap[r], pm[r]);
            self.inv[r][i] = inv_of(cap[r], pm[r]);
        }
    }

    /// Writes a compute's label bits: `words` for ids 0..64, `extra` as (extra word, bit).
    pub fn set_labels(&mut self, i: usize, words: [u32; 2], extra: &[(usize, u32)]) {
        self.labels[0][i] = words[0];
        self.labels[1][i] = words[1];
        for col in &mut self.extra_labels {
            col[i] = 0;
        }
        for &(w, bit) in extra {
            while self.extra_labels.len() <= w {
                self.extra_labels.push(vec![0; self.meta.len()]);
            }
            self.extra_labels[w][i] |= bit;
        }
    }
}

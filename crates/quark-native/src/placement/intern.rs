//! Interning of zone, label and group names to small dense ids.

use std::collections::HashMap;

/// Names to dense ids starting at `first`; append-only, so an id once given never changes.
#[derive(Debug, Clone)]
pub struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
    first: u32,
}

impl Interner {
    pub fn new(first: u32) -> Self {
        Self {
            ids: HashMap::new(),
            names: Vec::new(),
            first,
        }
    }

    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.first + self.names.len() as u32;
        self.ids.insert(name.to_owned(), id);
        self.names.push(name.to_owned());
        id
    }

    /// The id the next new name would get.
    pub fn next_id(&self) -> u32 {
        self.first + self.names.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_stable_and_start_at_first() {
        let mut i = Interner::new(1);
        assert_eq!(i.intern("a"), 1);
        assert_eq!(i.intern("b"), 2);
        assert_eq!(i.intern("a"), 1);
        assert_eq!(i.get("c"), None);
        assert_eq!(i.next_id(), 3);
    }
}

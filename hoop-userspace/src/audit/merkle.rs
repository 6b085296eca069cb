//! RFC 6962 Merkle tree over record hashes: leaf = SHA-256(0x00 || record hash),
//! node = SHA-256(0x01 || left || right); an O(log n) frontier for appends, audit paths and
//! their verification (RFC 9162 §2.1.3.2).

use sha2::{Digest, Sha256};

use super::record::Hash;

/// Leaf hash of a record: the leaf input is the record's 32-byte hash.
pub fn leaf_hash(record_hash: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0u8])
        .chain_update(record_hash)
        .finalize()
        .into()
}

/// Interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([1u8])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// Root of the empty tree: SHA-256 of the empty string.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The roots of the perfect subtrees that make up a tree of `size` leaves (one per set bit of
/// `size`, largest and leftmost first) — all that is needed to append and to compute the root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rebuilds a frontier stored in an `audit.segment` record; None if `nodes` cannot belong
    /// to a tree of `size` leaves.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Self> {
        (nodes.len() == size.count_ones() as usize).then_some(Frontier { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn nodes(&self) -> &[Hash] {
        &self.nodes
    }

    /// Appends a record's leaf: amortized two hashes, at most log2(n).
    pub fn push_record(&mut self, record_hash: &Hash) {
        let mut hash = leaf_hash(record_hash);
        let mut size = self.size;
        while size & 1 == 1 {
            let left = self.nodes.pop().expect("a set bit has a node");
            hash = node_hash(&left, &hash);
            size >>= 1;
        }
        self.nodes.push(hash);
        self.size += 1;
    }

    /// The tree head (MTH) of the leaves so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |right, left| node_hash(left, &right))
    }

    /// The leaf ranges `[start, end)` that each node covers.
    fn ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let mut start = 0;
        (0..64)
            .rev()
            .filter(move |bit| self.size >> bit & 1 == 1)
            .map(move |bit| {
                let range = (start, start + (1u64 << bit));
                start = range.1;
                range
            })
    }
}

/// MTH over leaf hashes (RFC 6962 §2.1), recursive: the reference the frontier is tested
/// against, and the worker of proof generation.
pub fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

/// Largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// A tree whose first `base.size()` leaves are known only through their frontier (they were
/// pruned) followed by `leaves` (leaf hashes, not record hashes).
pub struct TreeView<'a> {
    base: &'a Frontier,
    leaves: &'a [Hash],
}

impl<'a> TreeView<'a> {
    pub fn new(base: &'a Frontier, leaves: &'a [Hash]) -> Self {
        TreeView { base, leaves }
    }

    pub fn size(&self) -> u64 {
        self.base.size + self.leaves.len() as u64
    }

    /// MTH of leaves `[lo, hi)`; None if it needs a pruned leaf that no frontier node covers.
    pub fn range_hash(&self, lo: u64, hi: u64) -> Option<Hash> {
        let k = self.base.size;
        if lo >= k {
            return Some(mth(&self.leaves[(lo - k) as usize..(hi - k) as usize]));
        }
        if let Some(i) = self.base.ranges().position(|r| r == (lo, hi)) {
            return Some(self.base.nodes[i]);
        }
        if hi - lo < 2 {
            return None;
        }
        let mid = lo + split(hi - lo);
        Some(node_hash(
            &self.range_hash(lo, mid)?,
            &self.range_hash(mid, hi)?,
        ))
    }

    /// RFC 6962 audit path PATH(m, D[0:n]); None if m >= n, n exceeds the view, or the path
    /// needs pruned leaves (only when m < base size).
    pub fn audit_path(&self, m: u64, n: u64) -> Option<Vec<Hash>> {
        if m >= n || n > self.size() {
            return None;
        }
        let mut path = Vec::new();
        self.path_into(m, 0, n, &mut path)?;
        Some(path)
    }

    fn path_into(&self, m: u64, lo: u64, hi: u64, out: &mut Vec<Hash>) -> Option<()> {
        if hi - lo == 1 {
            return Some(());
        }
        let mid = lo + split(hi - lo);
        if m < mid {
            self.path_into(m, lo, mid, out)?;
            out.push(self.range_hash(mid, hi)?);
        } else {
            self.path_into(m, mid, hi, out)?;
            out.push(self.range_hash(lo, mid)?);
        }
        Some(())
    }
}

/// Checks that `leaf` is at `index` in the tree of `size` leaves with head `root`
/// (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut fnode, mut snode, mut r) = (index, size - 1, *leaf);
    for p in path {
        if snode == 0 {
            return false;
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    snode == 0 && r == *root
}

#[cfg(test)]
mod tests;

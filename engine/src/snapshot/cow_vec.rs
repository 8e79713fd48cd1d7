//! A vector that shares its storage between snapshots, chunk by chunk.

use std::sync::Arc;

/// Entries per chunk. A write copies one chunk of pointers (and the outer table of
/// chunk pointers), so its cost does not grow with the estate.
const CHUNK: usize = 1024;

/// A growable vector whose clones share every chunk until one of them writes to it:
/// then only that chunk (and the small table of chunk pointers) is copied. Within one
/// write, repeated changes to the same chunk copy it once.
#[derive(Clone)]
pub(crate) struct CowVec<T> {
    chunks: Arc<Vec<Arc<Vec<T>>>>,
    len: usize,
}

impl<T: Clone> CowVec<T> {
    pub(crate) fn new() -> CowVec<T> {
        CowVec {
            chunks: Arc::new(Vec::new()),
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub(crate) fn get(&self, index: usize) -> Option<&T> {
        if index >= self.len {
            return None;
        }
        Some(&self.chunks[index / CHUNK][index % CHUNK])
    }

    /// Mutable access to one entry, copying its chunk if another snapshot shares it.
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        if index >= self.len {
            return None;
        }
        let chunks = Arc::make_mut(&mut self.chunks);
        Some(&mut Arc::make_mut(&mut chunks[index / CHUNK])[index % CHUNK])
    }

    pub(crate) fn push(&mut self, value: T) -> usize {
        let index = self.len;
        let chunks = Arc::make_mut(&mut self.chunks);
        if index % CHUNK == 0 {
            chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = chunks.last_mut().expect("a chunk was just ensured");
        Arc::make_mut(last).push(value);
        self.len += 1;
        index
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }

    /// How many chunks this vector shares with `other` (for tests of sharing).
    #[cfg(test)]
    pub(crate) fn shared_chunks(&self, other: &CowVec<T>) -> usize {
        self.chunks
            .iter()
            .zip(other.chunks.iter())
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_all_but_the_written_chunk() {
        let mut original = CowVec::new();
        for i in 0..(CHUNK * 4) {
            original.push(i);
        }
        let mut copy = original.clone();
        *copy.get_mut(CHUNK + 3).unwrap() = 7;
        assert_eq!(copy.get(CHUNK + 3), Some(&7));
        assert_eq!(original.get(CHUNK + 3), Some(&(CHUNK + 3)));
        assert_eq!(copy.shared_chunks(&original), 3);
    }

    #[test]
    fn push_crosses_chunk_boundaries() {
        let mut vector = CowVec::new();
        for i in 0..(CHUNK * 2 + 1) {
            assert_eq!(vector.push(i), i);
        }
        assert_eq!(vector.len(), CHUNK * 2 + 1);
        assert_eq!(
            vector.iter().copied().sum::<usize>(),
            (0..=CHUNK * 2).sum::<usize>()
        );
        assert_eq!(vector.get(CHUNK * 2 + 1), None);
    }
}

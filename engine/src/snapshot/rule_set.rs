//! Small sorted sets of rule indexes: what reaches one user or one asset.

use std::sync::Arc;

use roaring::RoaringBitmap;
use smallvec::SmallVec;

/// The rules reaching one user or one asset: a sorted slice of dense rule indexes.
///
/// These sets are small (a handful to a few hundred) and are intersected on every
/// check, where a plain slice walks faster than a bitmap and costs one allocation per
/// entity instead of a bitmap's several. A set is shared: every asset sitting in the
/// same nodes (and named by no rule of its own) holds the same one, so an estate of a
/// million assets in a few thousand leaves keeps a few thousand sets, not a million.
#[derive(Clone, Default, Eq, Debug)]
pub(crate) struct RuleSet(Arc<[u32]>);

impl PartialEq for RuleSet {
    fn eq(&self, other: &RuleSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl RuleSet {
    pub(crate) fn from_bitmap(bitmap: &RoaringBitmap) -> RuleSet {
        RuleSet(bitmap.iter().collect())
    }

    /// A set from a list that should be sorted (an image's): sorted and deduplicated
    /// here if it is not.
    pub(crate) fn from_sorted(rules: Vec<u32>) -> RuleSet {
        RuleSet(sorted_unique(rules).into())
    }

    /// Whether both are the one shared set (not merely equal).
    pub(crate) fn same_allocation(&self, other: &RuleSet) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The address of the shared slice, to count each shared set once.
    pub(crate) fn address(&self) -> usize {
        self.0.as_ptr() as usize
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn contains(&self, rule: u32) -> bool {
        self.0.binary_search(&rule).is_ok()
    }

    pub(crate) fn to_bitmap(&self) -> RoaringBitmap {
        self.0.iter().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub(crate) fn as_slice(&self) -> &[u32] {
        &self.0
    }
}

/// The rules reaching one user: sorted dense rule indexes, inline in the user's check
/// record up to four (nearly every user: at the large bench estate the 99th
/// percentile is three), so a check reads them in the record's own cache line and a
/// copy of the record is a copy of bytes, not a reference count.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct UserRules(SmallVec<[u32; 4]>);

impl UserRules {
    /// A set from strictly ascending rule indexes.
    pub(crate) fn from_ascending(rules: impl Iterator<Item = u32>) -> UserRules {
        let rules: SmallVec<[u32; 4]> = rules.collect();
        debug_assert!(rules.windows(2).all(|pair| pair[0] < pair[1]));
        UserRules(rules)
    }

    /// A set from a list that should be sorted (an image's): sorted and deduplicated
    /// here if it is not.
    pub(crate) fn from_sorted(rules: Vec<u32>) -> UserRules {
        UserRules(sorted_unique(rules).into_iter().collect())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the list spilled to the heap (more than four rules).
    pub(crate) fn spilled(&self) -> bool {
        self.0.spilled()
    }

    pub(crate) fn to_bitmap(&self) -> RoaringBitmap {
        self.0.iter().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The rules both here and in `other`, ascending, without allocating.
    #[inline]
    pub(crate) fn common<'a>(&'a self, other: &'a RuleSet) -> Common<'a> {
        common(&self.0, other.as_slice())
    }
}

/// `rules` strictly ascending: sorted and deduplicated unless it already is.
fn sorted_unique(mut rules: Vec<u32>) -> Vec<u32> {
    if !rules.windows(2).all(|pair| pair[0] < pair[1]) {
        rules.sort_unstable();
        rules.dedup();
    }
    rules
}

/// The elements of two sorted slices that are in both, ascending.
#[inline]
fn common<'a>(a: &'a [u32], b: &'a [u32]) -> Common<'a> {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    Common { small, large }
}

/// The position of the first element of `sorted` that is not below `wanted`, found by
/// galloping: probing 1, 2, 4, … ahead, then searching the last gap. Cheap when the
/// answer is near the front, as it is while walking two sets of similar size.
#[inline]
fn gallop(sorted: &[u32], wanted: u32) -> usize {
    if sorted.first().is_none_or(|&first| first >= wanted) {
        return 0;
    }
    let mut high = 1;
    while high < sorted.len() && sorted[high] < wanted {
        high *= 2;
    }
    // INVARIANT: sorted[high / 2] < wanted, and sorted[high] >= wanted if it exists.
    let low = high / 2 + 1;
    let high = high.min(sorted.len());
    low + sorted[low..high].partition_point(|&x| x < wanted)
}

/// The intersection of two sorted slices: walks the smaller one and gallops through
/// the larger, so it costs O(small × log(large / small)).
pub(crate) struct Common<'a> {
    small: &'a [u32],
    large: &'a [u32],
}

impl Iterator for Common<'_> {
    type Item = u32;

    #[inline]
    fn next(&mut self) -> Option<u32> {
        while let Some((&wanted, rest)) = self.small.split_first() {
            self.small = rest;
            self.large = &self.large[gallop(self.large, wanted)..];
            match self.large.split_first() {
                Some((&found, rest)) if found == wanted => {
                    self.large = rest;
                    return Some(wanted);
                }
                Some(_) => {}
                None => {
                    self.small = &[];
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(items: &[u32]) -> RuleSet {
        RuleSet::from_bitmap(&items.iter().copied().collect())
    }

    fn user(items: &[u32]) -> UserRules {
        UserRules::from_sorted(items.to_vec())
    }

    #[test]
    fn gallop_finds_the_first_not_below() {
        let sorted: Vec<u32> = (0..100).map(|x| x * 3).collect();
        for wanted in 0..310 {
            let expected = sorted
                .iter()
                .position(|&x| x >= wanted)
                .unwrap_or(sorted.len());
            assert_eq!(gallop(&sorted, wanted), expected, "wanted {wanted}");
        }
        assert_eq!(gallop(&[], 5), 0);
    }

    #[test]
    fn common_is_the_intersection() {
        let cases: [(&[u32], &[u32]); 5] = [
            (&[], &[1, 2]),
            (&[1, 2, 3], &[2, 3, 4]),
            (&[5], &[1, 2, 3, 4, 5, 6, 7, 8, 9]),
            (&[0, 100, 1000, 70_000], &[100, 70_000, 80_000]),
            (&[1, 3, 5, 7], &[2, 4, 6, 8]),
        ];
        for (a, b) in cases {
            let expected: Vec<u32> = a.iter().copied().filter(|x| b.contains(x)).collect();
            assert_eq!(user(a).common(&set(b)).collect::<Vec<_>>(), expected);
            assert_eq!(user(b).common(&set(a)).collect::<Vec<_>>(), expected);
        }
    }
}

//! Small sorted sets of rule indexes: what reaches one user or one asset.

use roaring::RoaringBitmap;

/// The rules reaching one user or one asset: a sorted slice of dense rule indexes.
///
/// These sets are small (a handful to a few hundred) and are intersected on every
/// check, where a plain slice walks faster than a bitmap and costs one allocation per
/// entity instead of a bitmap's several.
#[derive(Clone, Default, PartialEq, Eq, Debug)]
pub(crate) struct RuleSet(Box<[u32]>);

impl RuleSet {
    pub(crate) fn from_bitmap(bitmap: &RoaringBitmap) -> RuleSet {
        RuleSet(bitmap.iter().collect())
    }

    pub(crate) fn to_bitmap(&self) -> RoaringBitmap {
        self.0.iter().copied().collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub(crate) fn contains(&self, rule: u32) -> bool {
        self.0.binary_search(&rule).is_ok()
    }

    /// The rules in both sets, ascending, without allocating.
    #[inline]
    pub(crate) fn common<'a>(&'a self, other: &'a RuleSet) -> Common<'a> {
        let (small, large) = if self.0.len() <= other.0.len() {
            (&*self.0, &*other.0)
        } else {
            (&*other.0, &*self.0)
        };
        Common { small, large }
    }
}

/// The intersection of two sorted slices: walks the smaller one and skips through the
/// larger by binary search, so it costs O(small × log large).
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
            let skip = self.large.partition_point(|&rule| rule < wanted);
            self.large = &self.large[skip..];
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
            assert_eq!(set(a).common(&set(b)).collect::<Vec<_>>(), expected);
            assert_eq!(set(b).common(&set(a)).collect::<Vec<_>>(), expected);
        }
    }
}

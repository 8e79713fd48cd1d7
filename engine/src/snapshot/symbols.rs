//! Protocol names and account usernames as small numbers, so a check compares
//! integers where it compared strings.

use super::{CowMap, CowVec};

/// Interned names: protocol names and account usernames (exact, case-sensitive text,
/// as the engine compares them). Symbols are never reused or removed: a name keeps its
/// number for the life of the process, whatever is deleted.
#[derive(Clone)]
pub(crate) struct Symbols {
    map: CowMap<Box<str>, u32, foldhash::fast::RandomState>,
    /// The names by symbol.
    names: CowVec<Box<str>>,
}

impl Symbols {
    pub(crate) fn new() -> Symbols {
        Symbols {
            map: CowMap::with_hasher(Default::default()),
            names: CowVec::new(),
        }
    }

    /// The symbol of `name`, if any entity has ever used it.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<u32> {
        self.map.get(name)
    }

    /// The symbol of `name`, made when new.
    pub(crate) fn intern(&mut self, name: &str) -> u32 {
        if let Some(symbol) = self.get(name) {
            return symbol;
        }
        let symbol = u32::try_from(self.map.len()).expect("fewer than 2^32 names");
        self.map.insert(name.into(), symbol);
        self.names.push(name.into());
        symbol
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The name of `symbol`.
    #[inline]
    pub(crate) fn name(&self, symbol: u32) -> &str {
        self.names
            .get(symbol as usize)
            .expect("INVARIANT: symbols come from this table")
    }

    /// Every name, by symbol: a table built by interning them in this order has the
    /// same symbols.
    pub(crate) fn in_order(&self) -> impl ExactSizeIterator<Item = &str> {
        (0..self.names.len() as u32).map(|symbol| self.name(symbol))
    }

    pub(crate) fn heap_bytes(&self) -> usize {
        self.map.heap_bytes()
            + self.names.len() * size_of::<Box<str>>()
            + self
                .map
                .iter()
                .map(|(name, _)| 2 * name.len())
                .sum::<usize>()
    }
}

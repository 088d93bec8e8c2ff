//! A batch's key for its key map: the bytes of [`super::key_bytes`], held in the map's slot
//! when they are short (a single integer or short text key: most tables), in an allocation of
//! their own otherwise.
//!
//! Why: a boxed key cost a `malloc` per new key and a `free` per key when the batch was sealed,
//! and each probe of the map followed the box's pointer to compare the bytes. In a profile of a
//! 10-column backlog drain the key map's lookups, inserts and rehashes and those allocations
//! were ~15 % of the agent's CPU.

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

/// Key bytes up to this length stay in the map's slot.
const INLINE: usize = 22;

#[derive(Clone)]
pub(super) enum BatchKey {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl BatchKey {
    pub(super) fn new(key: &[u8]) -> BatchKey {
        match key.len() {
            len @ 0..=INLINE => {
                let mut bytes = [0u8; INLINE];
                bytes[..len].copy_from_slice(key);
                BatchKey::Inline {
                    len: len as u8,
                    bytes,
                }
            }
            _ => BatchKey::Heap(key.into()),
        }
    }

    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            BatchKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            BatchKey::Heap(bytes) => bytes,
        }
    }

    /// Bytes the key's allocation takes besides its map slot (invariant 8): none when inline.
    pub(super) fn heap_len(&self) -> Option<usize> {
        match self {
            BatchKey::Inline { .. } => None,
            BatchKey::Heap(bytes) => Some(bytes.len()),
        }
    }
}

// Hashes and compares as its bytes, so the map is searched with a `&[u8]` (`Borrow`).
impl Hash for BatchKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq for BatchKey {
    fn eq(&self, other: &BatchKey) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for BatchKey {}

impl Borrow<[u8]> for BatchKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::fmt::Debug for BatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_slice().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn keys_of_every_length_are_found_by_their_bytes() {
        let keys: Vec<Vec<u8>> = (0..=40u8).map(|len| (0..len).collect()).collect();
        let mut map: HashMap<BatchKey, usize, foldhash::fast::RandomState> = HashMap::default();
        for (index, key) in keys.iter().enumerate() {
            let stored = BatchKey::new(key);
            assert_eq!(stored.as_slice(), key.as_slice());
            assert_eq!(stored.heap_len().is_some(), key.len() > INLINE);
            map.insert(stored, index);
        }
        for (index, key) in keys.iter().enumerate() {
            assert_eq!(map.get(key.as_slice()), Some(&index));
        }
        // A key that is a prefix of another, or differs only past the inline bytes, is another.
        assert_eq!(map.get(&[0u8, 1, 2, 9][..]), None);
        assert_eq!(map.len(), keys.len());
    }
}

//! Order-preserving encoding of Primary Key values, and the 128-byte key limit (reference §6
//! "encoded PK ≤128 bytes", BE `primary_key_limit_size`).
//!
//! Owns the byte form rows are stored under: fixed-width big-endian integers with the sign bit
//! flipped, day/microsecond numbers for dates, raw bytes for a trailing string and escaped,
//! terminated bytes for a string followed by more key columns — the same scheme StarRocks'
//! `PrimaryKeyEncoder` uses, so the size limit bites at about the same inputs. It does not validate
//! types beyond refusing values that cannot be keys.

use std::cmp::Ordering;

use super::types::ColumnType;
use super::value::Value;

/// BE `primary_key_limit_size`: the largest encoded Primary Key, in bytes.
pub const PRIMARY_KEY_LIMIT_BYTES: usize = 128;

/// Why a key could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// A key column holds NULL or a value of the wrong kind.
    BadValue {
        /// Position within the key.
        index: usize,
    },
    /// The encoded key is longer than [`PRIMARY_KEY_LIMIT_BYTES`].
    TooLong {
        /// Encoded size in bytes.
        bytes: usize,
    },
}

/// Encodes key values (in key-column order) into their stored byte form, in `out` (cleared
/// first, so a caller encoding many keys reuses one buffer).
pub(crate) fn encode_key_into(
    types: &[&ColumnType],
    values: &[&Value],
    out: &mut Vec<u8>,
) -> Result<(), KeyError> {
    out.clear();
    let last = values.len().saturating_sub(1);
    for (index, (ty, value)) in types.iter().zip(values).enumerate() {
        match (value, ty.fixed_key_width()) {
            (Value::Bool(b), Some(1)) => out.push(u8::from(*b)),
            (Value::Int(i), Some(width)) => {
                // Flip the sign bit so two's complement sorts as unsigned bytes.
                out.extend_from_slice(&narrow(*i, width)[16 - width..]);
            }
            (Value::Date(d), Some(4)) => out.extend_from_slice(&d.day_number().to_be_bytes()),
            (Value::DateTime(dt), Some(8)) => {
                let micros = u64::from(dt.date.day_number()) * 86_400_000_000 + dt.micros_of_day;
                out.extend_from_slice(&micros.to_be_bytes());
            }
            (Value::Text(s), None) if ty.max_bytes().is_some() => {
                if index == last {
                    out.extend_from_slice(s.as_bytes());
                } else {
                    for &byte in s.as_bytes() {
                        if byte == 0 {
                            out.extend_from_slice(&[0, 1]);
                        } else {
                            out.push(byte);
                        }
                    }
                    out.extend_from_slice(&[0, 0]);
                }
            }
            _ => return Err(KeyError::BadValue { index }),
        }
    }
    if out.len() > PRIMARY_KEY_LIMIT_BYTES {
        return Err(KeyError::TooLong { bytes: out.len() });
    }
    Ok(())
}

/// Longest encoded key kept inline in a [`RowKey`].
const INLINE_KEY_BYTES: usize = 22;

/// An encoded key as rows are stored under it. Most keys (integers, dates, short strings) are
/// kept inline and compared a word at a time, so a lookup in a large table neither follows a
/// pointer per comparison nor calls `memcmp`; longer keys live on the heap. Orders exactly as
/// the encoded bytes do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RowKey {
    /// Up to [`INLINE_KEY_BYTES`] bytes, zero-padded.
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    /// Longer keys.
    Heap(Box<[u8]>),
}

impl RowKey {
    /// The key for these encoded bytes (inline whenever they fit, so equal bytes make equal keys).
    pub(crate) fn new(encoded: &[u8]) -> RowKey {
        match u8::try_from(encoded.len()) {
            Ok(len) if encoded.len() <= INLINE_KEY_BYTES => {
                let mut bytes = [0u8; INLINE_KEY_BYTES];
                bytes[..encoded.len()].copy_from_slice(encoded);
                RowKey::Inline { len, bytes }
            }
            _ => RowKey::Heap(encoded.into()),
        }
    }

    /// The encoded bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            RowKey::Inline { len, bytes } => &bytes[..usize::from(*len)],
            RowKey::Heap(bytes) => bytes,
        }
    }
}

impl Ord for RowKey {
    fn cmp(&self, other: &RowKey) -> Ordering {
        match (self, other) {
            (
                RowKey::Inline { len, bytes },
                RowKey::Inline {
                    len: other_len,
                    bytes: other_bytes,
                },
            ) => {
                // The zero padding sorts below any byte that differs from it, and a key equal
                // to another plus zeros is a prefix of it: padded words, then length, is byte
                // order.
                for at in [0, 8, INLINE_KEY_BYTES - 8] {
                    let ordering = word(bytes, at).cmp(&word(other_bytes, at));
                    if ordering != Ordering::Equal {
                        return ordering;
                    }
                }
                len.cmp(other_len)
            }
            _ => self.as_bytes().cmp(other.as_bytes()),
        }
    }
}

impl PartialOrd for RowKey {
    fn partial_cmp(&self, other: &RowKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Eight bytes from `at`, big-endian (so integer order is byte order).
fn word(bytes: &[u8; INLINE_KEY_BYTES], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&bytes[at..at + 8]);
    u64::from_be_bytes(w)
}

/// Two's complement of `i` in `width` bytes with the sign bit flipped, right-aligned in 16 bytes.
fn narrow(i: i128, width: usize) -> [u8; 16] {
    let bits = width * 8;
    let mask: u128 = if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let value = ((i as u128) & mask) ^ (1u128 << (bits - 1));
    value.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::value::Date;

    fn encode_key(types: &[&ColumnType], values: &[&Value]) -> Result<Vec<u8>, KeyError> {
        let mut out = Vec::new();
        encode_key_into(types, values, &mut out)?;
        Ok(out)
    }

    fn enc(ty: &ColumnType, v: Value) -> Vec<u8> {
        encode_key(&[ty], &[&v]).unwrap()
    }

    #[test]
    fn integers_sort_like_numbers() {
        for ty in [
            ColumnType::TinyInt,
            ColumnType::SmallInt,
            ColumnType::Int,
            ColumnType::BigInt,
            ColumnType::LargeInt,
        ] {
            let a = enc(&ty, Value::Int(-5));
            let b = enc(&ty, Value::Int(-1));
            let c = enc(&ty, Value::Int(0));
            let d = enc(&ty, Value::Int(7));
            assert!(a < b && b < c && c < d, "{ty}");
            assert_eq!(a.len(), ty.fixed_key_width().unwrap());
        }
    }

    #[test]
    fn composite_keys_keep_order_and_escape_nul() {
        let v = ColumnType::Varchar { length: 10 };
        let i = ColumnType::Int;
        let k = |s: &str, n: i128| {
            encode_key(&[&v, &i], &[&Value::Text(s.into()), &Value::Int(n)]).unwrap()
        };
        assert!(k("a", 5) < k("ab", 1));
        assert!(k("a", 1) < k("a", 2));
        assert_ne!(k("a\0", 1), k("a", 1));
    }

    #[test]
    fn row_keys_order_like_their_bytes() {
        let samples: Vec<Vec<u8>> = vec![
            vec![],
            vec![0],
            vec![0, 0],
            vec![1],
            vec![0, 1],
            b"ab".to_vec(),
            b"ab\0".to_vec(),
            b"ab\0\0".to_vec(),
            b"abc".to_vec(),
            vec![0xff; 8],
            [vec![0xff; 8], vec![0]].concat(),
            vec![7; 21],
            vec![7; 22],
            [vec![7; 22], vec![0]].concat(),
            vec![7; 23],
            [vec![7; 21], vec![8]].concat(),
            [vec![7; 14], vec![0; 8]].concat(),
            [vec![7; 14], vec![0; 9]].concat(),
            vec![9; 40],
            [vec![0; 16], vec![1]].concat(),
            [vec![0; 15], vec![1]].concat(),
        ];
        for a in &samples {
            for b in &samples {
                let (ka, kb) = (RowKey::new(a), RowKey::new(b));
                assert_eq!(ka.cmp(&kb), a.cmp(b), "{a:?} {b:?}");
                assert_eq!(ka == kb, a == b, "{a:?} {b:?}");
                assert_eq!(ka.as_bytes(), &a[..]);
            }
        }
        assert!(matches!(RowKey::new(&[1; 22]), RowKey::Inline { .. }));
        assert!(matches!(RowKey::new(&[1; 23]), RowKey::Heap(_)));
    }

    #[test]
    fn limit_and_bad_values() {
        let v = ColumnType::Varchar { length: 1000 };
        assert!(matches!(
            encode_key(&[&v], &[&Value::Text("x".repeat(129))]),
            Err(KeyError::TooLong { bytes: 129 })
        ));
        assert!(encode_key(&[&v], &[&Value::Text("x".repeat(128))]).is_ok());
        assert_eq!(
            encode_key(&[&ColumnType::Int], &[&Value::Null]),
            Err(KeyError::BadValue { index: 0 })
        );
        let d = ColumnType::Date;
        assert!(
            enc(&d, Value::Date(Date::new(2020, 1, 1).unwrap()))
                < enc(&d, Value::Date(Date::new(2020, 1, 2).unwrap()))
        );
    }
}

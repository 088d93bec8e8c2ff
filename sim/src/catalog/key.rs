//! Order-preserving encoding of Primary Key values, and the 128-byte key limit (reference §6
//! "encoded PK ≤128 bytes", BE `primary_key_limit_size`).
//!
//! Owns the byte form rows are stored under: fixed-width big-endian integers with the sign bit
//! flipped, day/microsecond numbers for dates, raw bytes for a trailing string and escaped,
//! terminated bytes for a string followed by more key columns — the same scheme StarRocks'
//! `PrimaryKeyEncoder` uses, so the size limit bites at about the same inputs. It does not validate
//! types beyond refusing values that cannot be keys.

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

/// Encodes key values (in key-column order) into their stored byte form.
pub(crate) fn encode_key(types: &[&ColumnType], values: &[&Value]) -> Result<Vec<u8>, KeyError> {
    let mut out = Vec::with_capacity(16);
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
    Ok(out)
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

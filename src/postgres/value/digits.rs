//! Integers as ASCII decimal digits, appended to a byte buffer without `fmt` (the one home of
//! this writer: JSON integers, date and time fields, `_starwal_lsn`). Writers call it per value on
//! the hot path, where `fmt` machinery showed in profiles; it allocates nothing beyond the
//! buffer's growth. Does not own what the digits mean (padding widths and clamping are the
//! caller's). Never panics, for any value and width.

/// The digits of `u64::MAX`.
const MAX_DIGITS: usize = 20;

/// Appends `value` in decimal with at least `min_width` digits, zero-padded on the left (a
/// `min_width` above 20, the longest `u64`, counts as 20). `min_width` 0 or 1 writes `0` as `0`.
pub fn write_zero_padded(out: &mut Vec<u8>, value: u64, min_width: usize) {
    let mut digits = [b'0'; MAX_DIGITS];
    let mut remaining = value;
    let mut start = MAX_DIGITS;
    // At most 20 turns (u64::MAX has 20 digits), so `start` stays in bounds.
    for slot in digits.iter_mut().rev() {
        *slot = b'0' + (remaining % 10) as u8;
        remaining /= 10;
        start -= 1;
        if remaining == 0 {
            break;
        }
    }
    let start = start.min(MAX_DIGITS.saturating_sub(min_width));
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

/// Appends `value` in decimal.
pub fn write_u64(out: &mut Vec<u8>, value: u64) {
    write_zero_padded(out, value, 1);
}

/// Appends `value` in decimal, `-` first when negative (`i64::MIN` included).
pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(write: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = b"x".to_vec();
        write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn integers_match_display_at_the_edges() {
        for value in [0, 1, 9, 10, 99, 100, 23_803_720, u64::MAX] {
            assert_eq!(text(|out| write_u64(out, value)), format!("x{value}"));
        }
        for value in [0, 1, -1, 9, -10, i64::MAX, i64::MIN] {
            assert_eq!(text(|out| write_i64(out, value)), format!("x{value}"));
        }
    }

    #[test]
    fn padding_is_a_minimum_width() {
        assert_eq!(text(|out| write_zero_padded(out, 7, 4)), "x0007");
        assert_eq!(text(|out| write_zero_padded(out, 0, 2)), "x00");
        assert_eq!(text(|out| write_zero_padded(out, 0, 0)), "x0");
        assert_eq!(text(|out| write_zero_padded(out, 5, 6)), "x000005");
        assert_eq!(text(|out| write_zero_padded(out, 12_345, 2)), "x12345");
        assert_eq!(
            text(|out| write_zero_padded(out, 1, 99)),
            "x00000000000000000001"
        );
        assert_eq!(
            text(|out| write_zero_padded(out, u64::MAX, 25)),
            format!("x{}", u64::MAX)
        );
    }
}

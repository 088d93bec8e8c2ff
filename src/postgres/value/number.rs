//! Numbers and other fixed-form tokens in Postgres text output: integers (int2/int4/int8/oid),
//! floats ([`Float`], keeping the printed text so it can be written back exactly), numerics
//! ([`Numeric`], exact digits, never converted to binary) and UUIDs. Parsing is by hand over
//! bytes, without allocation. It does not decide how numbers are written (see `json.rs`).
//! Protects invariant #9: out-of-range or malformed numbers are reasons, never panics or wraps.

/// A `float4`/`float8` value: finite with its exact printed text, or one of the specials.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Float<'a> {
    /// A finite number; `text` is what Postgres printed (shortest round-trip form with
    /// `extra_float_digits=3`, e.g. `1e+100`, `-0`, `0.1`).
    Finite {
        /// The parsed value.
        value: f64,
        /// The original text, to write exactly.
        text: &'a str,
    },
    /// `NaN`.
    NaN,
    /// `Infinity`.
    Infinity,
    /// `-Infinity`.
    NegInfinity,
}

/// A `numeric` value: exact decimal text, or one of the specials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Numeric<'a> {
    /// Exact digits as printed: `-?digits(.digits)?`, any length.
    Finite(&'a str),
    /// `NaN`.
    NaN,
    /// `Infinity` (Postgres 14+).
    Infinity,
    /// `-Infinity` (Postgres 14+).
    NegInfinity,
}

/// Parses a decimal integer (`-?[0-9]+`, an optional `+` tolerated) within `min..=max`.
#[inline]
pub(crate) fn parse_integer_in_range(text: &str, min: i64, max: i64) -> Result<i64, &'static str> {
    let bytes = text.as_bytes();
    let (negative, digits) = match bytes.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, bytes),
    };
    if digits.is_empty() {
        return Err("not an integer");
    }
    // Accumulate negatively so that i64::MIN parses without overflow.
    let mut accumulated: i64 = 0;
    let mut overflowed = false;
    for &byte in digits {
        let digit = byte.wrapping_sub(b'0');
        if digit > 9 {
            return Err("not an integer");
        }
        match accumulated
            .checked_mul(10)
            .and_then(|v| v.checked_sub(i64::from(digit)))
        {
            Some(v) => accumulated = v,
            None => overflowed = true,
        }
    }
    let value = if overflowed {
        None
    } else if negative {
        Some(accumulated)
    } else {
        accumulated.checked_neg()
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err("out of range"),
    }
}

/// Parses float text as Postgres prints it: `NaN`, `Infinity`, `-Infinity` or a decimal with an
/// optional exponent. Rust's own float parser also accepts `inf`/`nan` spellings, so the syntax
/// is checked first.
#[inline]
pub(crate) fn parse_float(text: &str) -> Result<Float<'_>, &'static str> {
    match text {
        "NaN" => return Ok(Float::NaN),
        "Infinity" => return Ok(Float::Infinity),
        "-Infinity" => return Ok(Float::NegInfinity),
        _ => {}
    }
    if !is_decimal_float_syntax(text.as_bytes()) {
        return Err("not a floating-point number");
    }
    let value: f64 = text.parse().map_err(|_| "not a floating-point number")?;
    if !value.is_finite() {
        return Err("out of range");
    }
    Ok(Float::Finite { value, text })
}

/// `[+-]?(digits(.digits?)?|.digits)([eE][+-]?digits)?`
fn is_decimal_float_syntax(bytes: &[u8]) -> bool {
    let mut position = 0;
    if matches!(bytes.first(), Some(b'+' | b'-')) {
        position += 1;
    }
    let integer_digits = count_digits(bytes.get(position..).unwrap_or_default());
    position += integer_digits;
    let mut fraction_digits = 0;
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        fraction_digits = count_digits(bytes.get(position..).unwrap_or_default());
        position += fraction_digits;
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return false;
    }
    if matches!(bytes.get(position), Some(b'e' | b'E')) {
        position += 1;
        if matches!(bytes.get(position), Some(b'+' | b'-')) {
            position += 1;
        }
        let exponent_digits = count_digits(bytes.get(position..).unwrap_or_default());
        if exponent_digits == 0 {
            return false;
        }
        position += exponent_digits;
    }
    position == bytes.len()
}

/// Whether `text` is a JSON number (RFC 8259): `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
pub(crate) fn is_json_number(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut position = usize::from(bytes.first() == Some(&b'-'));
    match bytes.get(position) {
        Some(b'0') => position += 1,
        Some(b'1'..=b'9') => {
            position += count_digits(bytes.get(position..).unwrap_or_default());
        }
        _ => return false,
    }
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        let digits = count_digits(bytes.get(position..).unwrap_or_default());
        if digits == 0 {
            return false;
        }
        position += digits;
    }
    if matches!(bytes.get(position), Some(b'e' | b'E')) {
        position += 1;
        if matches!(bytes.get(position), Some(b'+' | b'-')) {
            position += 1;
        }
        let digits = count_digits(bytes.get(position..).unwrap_or_default());
        if digits == 0 {
            return false;
        }
        position += digits;
    }
    position == bytes.len()
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// Parses numeric text: `NaN`, `Infinity`, `-Infinity`, or `-?digits(.digits)?` (numeric_out
/// never prints an exponent or a bare point).
#[inline]
pub(crate) fn parse_numeric(text: &str) -> Result<Numeric<'_>, &'static str> {
    match text {
        "NaN" => return Ok(Numeric::NaN),
        "Infinity" => return Ok(Numeric::Infinity),
        "-Infinity" => return Ok(Numeric::NegInfinity),
        _ => {}
    }
    let bytes = text.as_bytes();
    let unsigned = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let (integer, fraction) = match unsigned.iter().position(|&b| b == b'.') {
        Some(point) => (
            unsigned.get(..point).unwrap_or_default(),
            Some(unsigned.get(point + 1..).unwrap_or_default()),
        ),
        None => (unsigned, None),
    };
    let all_digits = |part: &[u8]| !part.is_empty() && part.iter().all(u8::is_ascii_digit);
    if !all_digits(integer) || fraction.is_some_and(|f| !all_digits(f)) {
        return Err("not a decimal number");
    }
    Ok(Numeric::Finite(text))
}

/// Checks the `8-4-4-4-12` hexadecimal form Postgres prints for `uuid`.
#[inline]
pub(crate) fn validate_uuid(text: &str) -> Result<(), &'static str> {
    const MALFORMED: &str = "expected 8-4-4-4-12 hexadecimal digits";
    let bytes = text.as_bytes();
    if bytes.len() != 36 {
        return Err(MALFORMED);
    }
    let hyphens_in_place = [8, 13, 18, 23]
        .iter()
        .all(|&index| bytes.get(index) == Some(&b'-'));
    let groups_are_hex =
        [(0, 8), (9, 13), (14, 18), (19, 23), (24, 36)]
            .iter()
            .all(|&(start, end)| {
                bytes
                    .get(start..end)
                    .is_some_and(|group| group.iter().all(u8::is_ascii_hexdigit))
            });
    if hyphens_in_place && groups_are_hex {
        Ok(())
    } else {
        Err(MALFORMED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_parse_within_their_range() {
        assert_eq!(parse_integer_in_range("0", -1, 1), Ok(0));
        assert_eq!(parse_integer_in_range("-32768", -32768, 32767), Ok(-32768));
        assert_eq!(
            parse_integer_in_range("32768", -32768, 32767),
            Err("out of range")
        );
        assert_eq!(
            parse_integer_in_range("-9223372036854775808", i64::MIN, i64::MAX),
            Ok(i64::MIN)
        );
        assert_eq!(
            parse_integer_in_range("9223372036854775808", i64::MIN, i64::MAX),
            Err("out of range")
        );
        assert_eq!(
            parse_integer_in_range("99999999999999999999999", i64::MIN, i64::MAX),
            Err("out of range")
        );
        for bad in ["", "-", "+", "12a", " 1", "1 ", "0x10", "1.0", "--1"] {
            assert_eq!(
                parse_integer_in_range(bad, i64::MIN, i64::MAX),
                Err("not an integer")
            );
        }
    }

    #[test]
    fn floats_keep_their_text_and_specials() {
        assert_eq!(parse_float("NaN"), Ok(Float::NaN));
        assert_eq!(parse_float("Infinity"), Ok(Float::Infinity));
        assert_eq!(parse_float("-Infinity"), Ok(Float::NegInfinity));
        assert_eq!(
            parse_float("1e+100"),
            Ok(Float::Finite {
                value: 1e100,
                text: "1e+100"
            })
        );
        match parse_float("-0") {
            Ok(Float::Finite { value, text }) => {
                assert!(value == 0.0 && value.is_sign_negative());
                assert_eq!(text, "-0");
            }
            other => panic!("{other:?}"),
        }
        assert!(parse_float("1.5e-07").is_ok());
        assert!(parse_float(".5").is_ok());
        for bad in [
            "", "inf", "nan", "infinity", "1e", "1e+", "e5", ".", "-", "1.2.3", "1e400",
        ] {
            assert!(parse_float(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn json_number_syntax() {
        for good in [
            "0",
            "-0",
            "1",
            "1.5",
            "1e+100",
            "1E5",
            "-1.25e-7",
            "123456789",
        ] {
            assert!(is_json_number(good), "{good}");
        }
        for bad in ["", "+1", ".5", "5.", "01", "1e", "-", "NaN", "1.e5"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn numerics_are_exact_digits() {
        let huge = format!("{}.{}", "9".repeat(1000), "1".repeat(1000));
        assert_eq!(parse_numeric(&huge), Ok(Numeric::Finite(&huge)));
        assert_eq!(parse_numeric("-0.50"), Ok(Numeric::Finite("-0.50")));
        assert_eq!(parse_numeric("NaN"), Ok(Numeric::NaN));
        assert_eq!(parse_numeric("-Infinity"), Ok(Numeric::NegInfinity));
        for bad in ["", "-", "1.", ".5", "1e5", "1,5", "--1", "+1", "1.2.3"] {
            assert!(parse_numeric(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn uuids_need_the_canonical_form() {
        assert!(validate_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").is_ok());
        assert!(validate_uuid("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").is_ok());
        assert!(validate_uuid("a0eebc999c0b4ef8bb6d6bb9bd380a11").is_err());
        assert!(validate_uuid("g0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").is_err());
        assert!(validate_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1").is_err());
    }
}

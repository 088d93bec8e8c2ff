//! Row sets the MySQL side answers from — a table's rows, `information_schema` views, SHOW
//! outputs — and the WHERE / ORDER BY / LIMIT machinery shared by all of them.
//!
//! Owns predicate semantics: SQL three-valued comparison (NULL never matches `=`/`<` etc.),
//! comparing a stored [`Value`] with a literal the way StarRocks' implicit casts would (numbers
//! numerically and exactly for integers/decimals, dates and datetimes as dates, strings
//! byte-wise and case-sensitively), a literal that cannot be cast matching nothing, and JSON/ARRAY
//! columns refusing comparison with an error rather than a guess. Sorting puts NULL first on ASC
//! like StarRocks. It does not read the catalog or talk the protocol.

use std::cmp::Ordering;

use crate::catalog::{ColumnType, Date, DateTime, Decimal, Value};

use super::error::{SqlError, SqlResult};
use super::parser::{CmpOp, Literal, OrderItem, OrderKey, Predicate, Query};

/// The kind of a result column, for its MySQL type in the column definition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// Text (VARCHAR).
    Str,
    /// A 64-bit integer (BIGINT).
    Int,
    /// A table column of this type.
    Typed(ColumnType),
}

/// A column of a relation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RelColumn {
    pub(crate) name: String,
    pub(crate) kind: Kind,
}

impl RelColumn {
    pub(crate) fn new(name: impl Into<String>, kind: Kind) -> RelColumn {
        RelColumn {
            name: name.into(),
            kind,
        }
    }

    pub(crate) fn str(name: &str) -> RelColumn {
        RelColumn::new(name, Kind::Str)
    }

    pub(crate) fn int(name: &str) -> RelColumn {
        RelColumn::new(name, Kind::Int)
    }
}

/// Rows with named columns.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Relation {
    pub(crate) columns: Vec<RelColumn>,
    pub(crate) rows: Vec<Vec<Value>>,
}

/// Text cell helper.
pub(crate) fn text(s: impl Into<String>) -> Value {
    Value::Text(s.into())
}

/// Integer cell helper.
pub(crate) fn int(i: impl Into<i128>) -> Value {
    Value::Int(i.into())
}

/// Index of a column by name (ASCII case-insensitive, like StarRocks column names).
pub(crate) fn column_index(columns: &[RelColumn], name: &str) -> SqlResult<usize> {
    columns
        .iter()
        .position(|c| c.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| SqlError::unknown_column(name))
}

/// A predicate bound to a column index.
#[derive(Debug, Clone)]
pub(crate) struct Bound<'a> {
    index: usize,
    predicate: &'a Predicate,
}

/// Resolves every predicate's column.
pub(crate) fn bind<'a>(
    columns: &[RelColumn],
    predicates: &'a [Predicate],
) -> SqlResult<Vec<Bound<'a>>> {
    predicates
        .iter()
        .map(|predicate| {
            let name = match predicate {
                Predicate::Cmp { column, .. }
                | Predicate::IsNull { column, .. }
                | Predicate::In { column, .. }
                | Predicate::Like { column, .. } => column,
            };
            Ok(Bound {
                index: column_index(columns, name)?,
                predicate,
            })
        })
        .collect()
}

/// Whether a row satisfies every bound predicate.
pub(crate) fn row_matches(
    columns: &[RelColumn],
    row: &[Value],
    bound: &[Bound<'_>],
) -> SqlResult<bool> {
    for b in bound {
        let Some(value) = row.get(b.index) else {
            return Ok(false);
        };
        let kind = columns.get(b.index).map(|c| &c.kind);
        if !matches_one(value, kind, b.predicate)? {
            return Ok(false);
        }
    }
    Ok(true)
}

fn matches_one(value: &Value, kind: Option<&Kind>, predicate: &Predicate) -> SqlResult<bool> {
    Ok(match predicate {
        Predicate::IsNull { negated, .. } => value.is_null() != *negated,
        Predicate::Cmp {
            op: CmpOp::NullSafeEq,
            value: lit,
            ..
        } => match (value.is_null(), lit == &Literal::Null) {
            (true, true) => true,
            (true, false) | (false, true) => false,
            (false, false) => compare(value, lit, kind)? == Some(Ordering::Equal),
        },
        Predicate::Cmp { op, value: lit, .. } => match compare(value, lit, kind)? {
            None => false,
            Some(ord) => match op {
                CmpOp::Eq | CmpOp::NullSafeEq => ord == Ordering::Equal,
                CmpOp::Ne => ord != Ordering::Equal,
                CmpOp::Lt => ord == Ordering::Less,
                CmpOp::Le => ord != Ordering::Greater,
                CmpOp::Gt => ord == Ordering::Greater,
                CmpOp::Ge => ord != Ordering::Less,
            },
        },
        Predicate::In {
            values, negated, ..
        } => {
            if value.is_null() {
                return Ok(false);
            }
            let mut found = false;
            let mut saw_null = false;
            for lit in values {
                if lit == &Literal::Null {
                    saw_null = true;
                } else if compare(value, lit, kind)? == Some(Ordering::Equal) {
                    found = true;
                }
            }
            // `x NOT IN (..., NULL)` is never true in SQL.
            if *negated {
                !found && !saw_null
            } else {
                found
            }
        }
        Predicate::Like {
            pattern, negated, ..
        } => match value {
            Value::Null => false,
            Value::Json(_) | Value::Array(_) => {
                return Err(SqlError::unsupported("LIKE on a JSON or ARRAY column"))
            }
            other => {
                let text = other.to_text().unwrap_or_default();
                like(&text, pattern) != *negated
            }
        },
    })
}

/// Compares a stored value with a literal; `None` when the result is SQL NULL (either side
/// NULL, or the literal cannot be cast to the value's type).
pub(crate) fn compare(
    value: &Value,
    lit: &Literal,
    kind: Option<&Kind>,
) -> SqlResult<Option<Ordering>> {
    let Some(raw) = lit.text() else {
        return Ok(None);
    };
    let raw = raw.as_str();
    Ok(match value {
        Value::Null => None,
        Value::Int(i) => match raw.trim().parse::<i128>() {
            Ok(n) => Some(i.cmp(&n)),
            Err(_) => parse_decimal(raw.trim())
                .map(|d| {
                    cmp_decimal(
                        &Decimal {
                            unscaled: *i,
                            scale: 0,
                        },
                        &d,
                    )
                })
                .or_else(|| float_cmp(*i as f64, raw)),
        },
        Value::Bool(b) => {
            let n = match raw.trim().to_ascii_lowercase().as_str() {
                "true" => Some(1.0),
                "false" => Some(0.0),
                other => other.parse::<f64>().ok(),
            };
            n.and_then(|n| f64::from(u8::from(*b)).partial_cmp(&n))
        }
        Value::Float(f) => float_cmp(*f, raw),
        Value::Decimal(d) => match parse_decimal(raw.trim()) {
            Some(other) => Some(cmp_decimal(d, &other)),
            None => float_cmp(d.to_string().parse::<f64>().unwrap_or(f64::NAN), raw),
        },
        Value::Date(d) => match parse_date_or_datetime(raw) {
            Some(Temporal::Date(other)) => Some(d.cmp(&other)),
            Some(Temporal::DateTime(other)) => Some(
                DateTime {
                    date: *d,
                    micros_of_day: 0,
                }
                .cmp(&other),
            ),
            None => None,
        },
        Value::DateTime(dt) => match parse_date_or_datetime(raw) {
            Some(Temporal::DateTime(other)) => Some(dt.cmp(&other)),
            Some(Temporal::Date(other)) => Some(dt.cmp(&DateTime {
                date: other,
                micros_of_day: 0,
            })),
            None => None,
        },
        Value::Text(s) => Some(s.as_bytes().cmp(raw.as_bytes())),
        Value::Json(_) | Value::Array(_) => {
            let what = match kind {
                Some(Kind::Typed(ty)) => ty.to_string(),
                _ => "JSON/ARRAY".to_string(),
            };
            return Err(SqlError::analysis(format!(
                "comparison on a {what} column is not supported by starrocks-sim"
            )));
        }
    })
}

fn float_cmp(value: f64, raw: &str) -> Option<Ordering> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .and_then(|n| value.partial_cmp(&n))
}

/// `[-+]digits[.digits]` → a decimal; `None` for anything else (exponents, text, > 38 digits).
fn parse_decimal(raw: &str) -> Option<Decimal> {
    let (negative, rest) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let (int_part, frac_part) = rest.split_once('.').unwrap_or((rest, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
        || int_part.len() + frac_part.len() > 38
    {
        return None;
    }
    let digits = format!("{int_part}{frac_part}");
    let unscaled = if digits.is_empty() {
        0
    } else {
        digits.parse::<i128>().ok()?
    };
    Some(Decimal {
        unscaled: if negative { -unscaled } else { unscaled },
        scale: u8::try_from(frac_part.len()).ok()?,
    })
}

/// Exact comparison of two decimals of any scales (float fallback only on i128 overflow).
fn cmp_decimal(a: &Decimal, b: &Decimal) -> Ordering {
    let scale = a.scale.max(b.scale);
    let rescale = |d: &Decimal| {
        10i128
            .checked_pow(u32::from(scale - d.scale))
            .and_then(|f| d.unscaled.checked_mul(f))
    };
    match (rescale(a), rescale(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => {
            let f = |d: &Decimal| d.unscaled as f64 / 10f64.powi(i32::from(d.scale));
            f(a).partial_cmp(&f(b)).unwrap_or(Ordering::Equal)
        }
    }
}

enum Temporal {
    Date(Date),
    DateTime(DateTime),
}

/// A date or datetime literal; DATETIME first so a time part is never truncated away.
fn parse_date_or_datetime(raw: &str) -> Option<Temporal> {
    if let Ok(Value::DateTime(dt)) = ColumnType::DateTime.convert_text("", raw) {
        return Some(Temporal::DateTime(dt));
    }
    if let Ok(Value::Date(d)) = ColumnType::Date.convert_text("", raw) {
        return Some(Temporal::Date(d));
    }
    None
}

/// SQL LIKE with `%`, `_` and `\` escapes, case-sensitive.
pub(crate) fn like(text: &str, pattern: &str) -> bool {
    let t: Vec<char> = text.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    // Iterative matcher with backtracking on the last `%`.
    let (mut ti, mut pi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('%') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('_') => true,
            Some('\\') if pi + 1 < p.len() && p[pi + 1] == t[ti] => {
                pi += 1;
                true
            }
            Some('\\') if pi + 1 < p.len() => false,
            Some(c) => *c == t[ti],
            None => false,
        };
        if step {
            ti += 1;
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while p.get(pi) == Some(&'%') {
        pi += 1;
    }
    pi == p.len()
}

/// Sorts rows by ORDER BY items resolved to column indexes; NULL sorts first ascending.
pub(crate) fn sort(rows: &mut [Vec<Value>], keys: &[(usize, bool)]) {
    if keys.is_empty() {
        return;
    }
    rows.sort_by(|a, b| {
        for &(index, desc) in keys {
            let (Some(x), Some(y)) = (a.get(index), b.get(index)) else {
                continue;
            };
            let ord = x.compare(y).unwrap_or(Ordering::Equal);
            let ord = if desc { ord.reverse() } else { ord };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    });
}

/// Applies OFFSET/LIMIT.
pub(crate) fn limit<T>(rows: Vec<T>, query: &Query) -> Vec<T> {
    let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let take = query
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    rows.into_iter().skip(offset).take(take).collect()
}

impl Relation {
    /// WHERE, ORDER BY (columns of this relation only) and LIMIT, in place.
    pub(crate) fn apply(&mut self, query: &Query) -> SqlResult<()> {
        let bound = bind(&self.columns, &query.filter)?;
        let mut kept = Vec::with_capacity(self.rows.len());
        for row in std::mem::take(&mut self.rows) {
            if row_matches(&self.columns, &row, &bound)? {
                kept.push(row);
            }
        }
        let keys = self.order_keys(&query.order)?;
        sort(&mut kept, &keys);
        self.rows = limit(kept, query);
        Ok(())
    }

    fn order_keys(&self, order: &[OrderItem]) -> SqlResult<Vec<(usize, bool)>> {
        order
            .iter()
            .map(|item| {
                let index = match &item.key {
                    OrderKey::Column(name) => column_index(&self.columns, name)?,
                    OrderKey::Position(p) => p
                        .checked_sub(1)
                        .filter(|i| *i < self.columns.len())
                        .ok_or_else(|| {
                        SqlError::analysis(format!("ORDER BY position {p} is not in select list"))
                    })?,
                };
                Ok((index, item.desc))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("abc", "a%"));
        assert!(like("abc", "%c"));
        assert!(like("abc", "a_c"));
        assert!(like("abc", "%"));
        assert!(!like("abc", "a_"));
        assert!(like("a_c", "a\\_c"));
        assert!(!like("abc", "a\\_c"));
        assert!(like("", "%"));
        assert!(like("aXbXc", "%b%c"));
    }

    #[test]
    fn comparisons_cast_like_starrocks() {
        let num = |s: &str| Literal::Num(s.into());
        let s = |s: &str| Literal::Str(s.into());
        let c = |v: Value, l: Literal| compare(&v, &l, None).unwrap();
        assert_eq!(c(Value::Int(5), num("5")), Some(Ordering::Equal));
        assert_eq!(c(Value::Int(5), num("4.5")), Some(Ordering::Greater));
        assert_eq!(c(Value::Int(5), s("5")), Some(Ordering::Equal));
        assert_eq!(c(Value::Int(5), s("abc")), None);
        assert_eq!(c(Value::Null, num("1")), None);
        assert_eq!(c(Value::Int(1), Literal::Null), None);
        let d = Value::Decimal(Decimal {
            unscaled: 150,
            scale: 2,
        });
        assert_eq!(c(d.clone(), num("1.5")), Some(Ordering::Equal));
        assert_eq!(c(d, num("1.51")), Some(Ordering::Less));
        assert_eq!(
            c(Value::Bool(true), Literal::Bool(true)),
            Some(Ordering::Equal)
        );
        assert_eq!(c(Value::Text("b".into()), s("a")), Some(Ordering::Greater));
        let date = Value::Date(Date::new(2024, 1, 2).unwrap());
        assert_eq!(c(date.clone(), s("2024-01-02")), Some(Ordering::Equal));
        assert_eq!(c(date, s("2024-01-02 00:00:01")), Some(Ordering::Less));
        assert!(compare(&Value::Json(serde_json::json!({})), &s("x"), None).is_err());
    }
}

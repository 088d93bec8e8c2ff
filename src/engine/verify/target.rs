//! Reading the StarRocks side of a verify over the FE's MySQL protocol: rows by key (`IN` lists,
//! which every StarRocks version and the sim answer the same way, whatever the key's type and
//! collation), and a table's keys. Values come back as the text StarRocks prints; the
//! comparison form is `canon`'s.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::canon::{target_field, Canon};
use super::{TableCtx, VerifyError};
use crate::sink::starrocks::config::StarRocksConfig;
use crate::sink::starrocks::mapping::{TargetType, AUDIT_DELETED, AUDIT_LSN};

/// Keys per `IN` list: tens of kilobytes of SQL, well inside the FE's limits; each query is a
/// round trip, so fewer larger lists verify faster (500 per list: 2000 queries per 1M rows).
pub const KEYS_PER_QUERY: usize = 2_000;

/// One target row: its key (comparison form), values in source column order, its
/// `_starwal_lsn`, whether it is soft-deleted.
#[derive(Debug, Clone)]
pub struct TargetRow {
    pub key: Vec<Canon>,
    pub values: Vec<Canon>,
    pub lsn: Option<u64>,
    pub deleted: bool,
}

/// Connects with `STARWAL_STARROCKS_USER`/`_PASSWORD` (the password is never in an error).
pub async fn connect(config: &StarRocksConfig) -> Result<Conn, VerifyError> {
    let (host, port) = config
        .mysql_addr
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
        .unwrap_or((config.mysql_addr.as_str(), 9030));
    let opts = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(config.user.clone()))
        .pass(Some(config.password.expose().to_owned()))
        .prefer_socket(false);
    let what = || format!("connecting to StarRocks at {}", config.mysql_addr);
    match tokio::time::timeout(config.connect_timeout, Conn::new(opts)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(source)) => Err(VerifyError::Target {
            what: what(),
            detail: crate::error_text::chain(&source).to_string(),
        }),
        Err(_) => Err(VerifyError::Target {
            what: what(),
            detail: "connect timed out".into(),
        }),
    }
}

pub fn quote_name(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

fn literal(data_type: &TargetType, value: &str) -> String {
    match data_type {
        TargetType::Boolean | TargetType::SmallInt | TargetType::Int | TargetType::BigInt
            if value.bytes().all(|b| b.is_ascii_digit() || b == b'-') && !value.is_empty() =>
        {
            value.to_owned()
        }
        _ => format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'")),
    }
}

/// The rows of `keys` (a row whose key is not asked for is dropped: composite keys are asked
/// for as one `IN` per column, a superset).
pub async fn rows_by_key(
    conn: &mut Conn,
    database: &str,
    ctx: &TableCtx,
    keys: &[&Vec<Canon>],
) -> Result<Vec<TargetRow>, VerifyError> {
    let mut out = Vec::new();
    for batch in keys.chunks(KEYS_PER_QUERY) {
        let wanted: std::collections::HashSet<&Vec<Canon>> = batch.iter().copied().collect();
        let mut conditions = Vec::with_capacity(ctx.key_idx.len());
        for (k, &column) in ctx.key_idx.iter().enumerate() {
            let mut values: Vec<String> = batch
                .iter()
                .filter_map(|key| key.get(k).cloned().flatten())
                .map(|value| literal(&ctx.types[column], &value))
                .collect();
            values.sort();
            values.dedup();
            conditions.push(format!(
                "{} IN ({})",
                quote_name(&ctx.schema.columns[column].name),
                values.join(", ")
            ));
        }
        let sql = format!(
            "SELECT {} FROM {}.{} WHERE {}",
            ctx.select_list,
            quote_name(database),
            quote_name(&ctx.target),
            conditions.join(" AND ")
        );
        for row in query(conn, &sql, &ctx.target).await? {
            let row = ctx.target_row(row);
            if wanted.contains(&row.key) {
                out.push(row);
            }
        }
    }
    Ok(out)
}

/// Calls `each` with every key of the target table, its `_starwal_lsn` and deleted flag (values
/// empty), as the rows arrive: the keys of a big table are never all held.
pub async fn for_each_key(
    conn: &mut Conn,
    database: &str,
    ctx: &TableCtx,
    mut each: impl FnMut(TargetRow),
) -> Result<(), VerifyError> {
    let keys: Vec<String> = ctx
        .key_idx
        .iter()
        .map(|&i| quote_name(&ctx.schema.columns[i].name))
        .collect();
    let sql = format!(
        "SELECT {}, {}, {} FROM {}.{}",
        keys.join(", "),
        quote_name(AUDIT_LSN),
        quote_name(AUDIT_DELETED),
        quote_name(database),
        quote_name(&ctx.target)
    );
    let error = |source: mysql_async::Error| VerifyError::Target {
        what: format!("reading the keys of StarRocks table `{}`", ctx.target),
        detail: crate::error_text::chain(&source).to_string(),
    };
    let mut result = conn.query_iter(sql).await.map_err(error)?;
    result
        .for_each(|row| {
            let mut row = texts(row);
            let n = ctx.key_idx.len();
            let deleted = row.pop().flatten();
            let lsn = row.pop().flatten();
            each(TargetRow {
                key: ctx
                    .key_idx
                    .iter()
                    .zip(&row[..n.min(row.len())])
                    .map(|(&i, text)| target_field(&ctx.types[i], text.as_deref()))
                    .collect(),
                values: Vec::new(),
                lsn: lsn.and_then(|l| l.trim().parse().ok()),
                deleted: is_true(deleted.as_deref()),
            });
        })
        .await
        .map_err(error)
}

pub fn is_true(text: Option<&str>) -> bool {
    matches!(text.map(str::trim), Some("1" | "true" | "TRUE"))
}

async fn query(
    conn: &mut Conn,
    sql: &str,
    table: &str,
) -> Result<Vec<Vec<Option<String>>>, VerifyError> {
    let rows: Vec<mysql_async::Row> =
        conn.query(sql)
            .await
            .map_err(|source| VerifyError::Target {
                what: format!("reading StarRocks table `{table}`"),
                detail: crate::error_text::chain(&source).to_string(),
            })?;
    Ok(rows.into_iter().map(texts).collect())
}

/// A row's values as text (`None` = NULL): the text protocol sends every value as bytes.
fn texts(row: mysql_async::Row) -> Vec<Option<String>> {
    row.unwrap()
        .into_iter()
        .map(|value| match value {
            mysql_async::Value::NULL => None,
            mysql_async::Value::Bytes(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
            other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
        })
        .collect()
}

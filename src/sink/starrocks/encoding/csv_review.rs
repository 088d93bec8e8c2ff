//! Review of the CSV bodies: a CSV load carries a `columns` header naming every field, which
//! StarRocks' FE must take within `http_max_header_size` (32768 bytes for all headers, Netty's
//! `HttpServerCodec` in `fe/.../http/HttpServer.java`). A wide table whose header would not fit
//! keeps JSON bodies (a JSON load of full rows needs no `columns` header), or every load of it
//! would be refused at the FE and the table stop.

use super::*;
use crate::postgres::Oid;
use crate::schema::{ColumnSchema, TableSchema};
use crate::sink::starrocks::stream_load::columns_header;

fn wide(columns: usize, name_len: usize) -> TableSchema {
    let column = |index: usize| ColumnSchema {
        name: format!("{index:0>name_len$}"),
        type_oid: Oid(25),
        type_modifier: -1,
        type_name: "text".into(),
        nullable: index != 0,
        key_position: (index == 0).then_some(0),
    };
    TableSchema {
        schema: "public".into(),
        name: "wide".into(),
        columns: (0..columns).map(column).collect(),
    }
}

#[test]
fn a_table_whose_columns_header_would_not_fit_the_fe_loads_json() {
    // Postgres' widest table: 1600 columns of 63-byte names, a 105 kB header.
    for (columns, name_len) in [(1600, 63), (600, 40), (300, 60)] {
        let schema = wide(columns, name_len);
        let encoder = TableEncoder::new(&schema, DeleteMode::Hard, TypeMapping::default());
        let header = columns_header(&encoder.full_columns());
        assert_eq!(header.len(), csv_columns_header_len(&schema));
        assert!(header.len() > CSV_COLUMNS_HEADER_MAX, "{}", header.len());
        assert_eq!(encoder.format(), BodyFormat::Json, "{columns} x {name_len}");
    }
    for (columns, name_len) in [(10, 8), (200, 40)] {
        let schema = wide(columns, name_len);
        let encoder = TableEncoder::new(&schema, DeleteMode::Hard, TypeMapping::default());
        let header = columns_header(&encoder.full_columns());
        assert_eq!(header.len(), csv_columns_header_len(&schema));
        assert!(header.len() <= CSV_COLUMNS_HEADER_MAX, "{}", header.len());
        assert_eq!(encoder.format(), BodyFormat::Csv, "{columns} x {name_len}");
    }
    // Backticks in a name are doubled in the header.
    let mut odd = wide(3, 4);
    odd.columns[1].name = "a`b".into();
    let encoder = TableEncoder::new(&odd, DeleteMode::Hard, TypeMapping::default());
    assert_eq!(
        columns_header(&encoder.full_columns()).len(),
        csv_columns_header_len(&odd)
    );
}

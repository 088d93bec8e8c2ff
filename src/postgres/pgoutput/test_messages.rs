//! Test-only builders of pgoutput wire bytes, so the parser's tests read as the protocol layout
//! (`reference/postgres-replication.md` §1.5) rather than as hex. Compiled only under `cfg(test)`.
//! It is deliberately independent of the parser: it writes fields with `BufMut`, never through the
//! decoding code it checks.

use bytes::{BufMut, Bytes, BytesMut};

/// One message under construction.
#[derive(Debug)]
pub(crate) struct WireMessage(BytesMut);

impl WireMessage {
    pub(crate) fn new(type_byte: u8) -> Self {
        let mut bytes = BytesMut::new();
        bytes.put_u8(type_byte);
        WireMessage(bytes)
    }

    pub(crate) fn u8(mut self, value: u8) -> Self {
        self.0.put_u8(value);
        self
    }

    pub(crate) fn i16(mut self, value: i16) -> Self {
        self.0.put_i16(value);
        self
    }

    pub(crate) fn i32(mut self, value: i32) -> Self {
        self.0.put_i32(value);
        self
    }

    pub(crate) fn u32(mut self, value: u32) -> Self {
        self.0.put_u32(value);
        self
    }

    pub(crate) fn u64(mut self, value: u64) -> Self {
        self.0.put_u64(value);
        self
    }

    pub(crate) fn i64(mut self, value: i64) -> Self {
        self.0.put_i64(value);
        self
    }

    /// A NUL-terminated string.
    pub(crate) fn str(mut self, value: &str) -> Self {
        self.0.put_slice(value.as_bytes());
        self.0.put_u8(0);
        self
    }

    pub(crate) fn raw(mut self, bytes: &[u8]) -> Self {
        self.0.put_slice(bytes);
        self
    }

    /// `[xid]` when `xid` is given.
    pub(crate) fn maybe_xid(self, xid: Option<u32>) -> Self {
        match xid {
            Some(xid) => self.u32(xid),
            None => self,
        }
    }

    /// A TupleData of text columns; `None` is NULL.
    pub(crate) fn text_tuple(mut self, columns: &[Option<&str>]) -> Self {
        self.0.put_i16(columns.len() as i16);
        for column in columns {
            match column {
                Some(text) => {
                    self.0.put_u8(b't');
                    self.0.put_i32(text.len() as i32);
                    self.0.put_slice(text.as_bytes());
                }
                None => self.0.put_u8(b'n'),
            }
        }
        self
    }

    pub(crate) fn build(self) -> Bytes {
        self.0.freeze()
    }
}

/// An Insert of `columns` into relation 16_384.
pub(crate) fn insert(xid: Option<u32>, columns: &[Option<&str>]) -> Bytes {
    WireMessage::new(b'I')
        .maybe_xid(xid)
        .u32(16_384)
        .u8(b'N')
        .text_tuple(columns)
        .build()
}

/// One valid message of every type, as (in_stream_block, bytes): the corpus the mutation tests
/// and the fuzz seeds start from.
pub(crate) fn one_of_each() -> Vec<(bool, Bytes)> {
    let row: &[Option<&str>] = &[Some("1"), None, Some("héllo")];
    let mut messages = vec![
        (
            false,
            WireMessage::new(b'B')
                .u64(0x16B_3748)
                .i64(1_000)
                .u32(731)
                .build(),
        ),
        (
            false,
            WireMessage::new(b'C')
                .u8(0)
                .u64(0x16B_3748)
                .u64(0x16B_3780)
                .i64(1_000)
                .build(),
        ),
        (
            false,
            WireMessage::new(b'O').u64(0x99).str("node_a").build(),
        ),
        (false, WireMessage::new(b'S').u32(731).u8(1).build()),
        (false, WireMessage::new(b'E').build()),
        (
            false,
            WireMessage::new(b'c')
                .u32(731)
                .u8(0)
                .u64(10)
                .u64(20)
                .i64(30)
                .build(),
        ),
        (false, WireMessage::new(b'A').u32(731).u32(732).build()),
        (
            false,
            WireMessage::new(b'A')
                .u32(731)
                .u32(731)
                .u64(40)
                .i64(50)
                .build(),
        ),
        (
            false,
            WireMessage::new(b'b')
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(731)
                .str("gid-1")
                .build(),
        ),
        (
            false,
            WireMessage::new(b'P')
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(731)
                .str("gid-1")
                .build(),
        ),
        (
            false,
            WireMessage::new(b'p')
                .u8(0)
                .u64(1)
                .u64(2)
                .i64(3)
                .u32(731)
                .str("gid-1")
                .build(),
        ),
        (
            false,
            WireMessage::new(b'K')
                .u8(0)
                .u64(4)
                .u64(5)
                .i64(6)
                .u32(731)
                .str("gid-1")
                .build(),
        ),
        (
            false,
            WireMessage::new(b'r')
                .u8(0)
                .u64(7)
                .u64(8)
                .i64(9)
                .i64(10)
                .u32(731)
                .str("gid-1")
                .build(),
        ),
    ];
    for (in_stream_block, xid) in [(false, None), (true, Some(731))] {
        let with_xid = |type_byte| WireMessage::new(type_byte).maybe_xid(xid);
        let changes = [
            with_xid(b'R')
                .u32(16_384)
                .str("public")
                .str("orders")
                .u8(b'd')
                .i16(2)
                .u8(1)
                .str("id")
                .u32(23)
                .i32(-1)
                .u8(0)
                .str("note")
                .u32(1043)
                .i32(68)
                .build(),
            with_xid(b'Y').u32(16_390).str("public").str("mood").build(),
            with_xid(b'I').u32(16_384).u8(b'N').text_tuple(row).build(),
            with_xid(b'U').u32(16_384).u8(b'N').text_tuple(row).build(),
            with_xid(b'U')
                .u32(16_384)
                .u8(b'K')
                .text_tuple(&[Some("1"), None, None])
                .u8(b'N')
                .text_tuple(row)
                .build(),
            with_xid(b'U')
                .u32(16_384)
                .u8(b'O')
                .text_tuple(row)
                .u8(b'N')
                .raw(b"\x00\x03t\x00\x00\x00\x012nu")
                .build(),
            with_xid(b'D')
                .u32(16_384)
                .u8(b'K')
                .text_tuple(&[Some("1"), None, None])
                .build(),
            with_xid(b'D').u32(16_384).u8(b'O').text_tuple(row).build(),
            with_xid(b'T').i32(2).u8(3).u32(16_384).u32(16_385).build(),
            with_xid(b'M')
                .u8(1)
                .u64(0x50)
                .str("heartbeat")
                .i32(3)
                .raw(b"a\x00b")
                .build(),
        ];
        messages.extend(changes.map(|bytes| (in_stream_block, bytes)));
    }
    messages
}

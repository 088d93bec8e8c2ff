//! starrocks-sim integration tests: one binary, a module per theme. The sim is driven with the
//! real `curl` CLI (`/usr/bin/curl`) as the StarRocks docs show, so the FE 307 redirect and the
//! BE's `Expect: 100-continue` handling are proven against a client we did not write.

mod faults;
mod harness;
mod lifecycle;
mod stream_load;
mod txn_api;
mod txn_multi;

//! The one end-to-end test binary (`cargo test --test e2e`): every test module is listed here,
//! so the shared PostgreSQL cluster of [`harness`] is started once per run. Files live next to
//! this one in `tests/e2e/` (Cargo does not turn those into test binaries of their own).
//! Postgres-facing modules are named `postgres_*` (CI runs them against PG 14–18).

mod cli_artifacts;
mod cli_top;
mod control_server;
mod deploy_artifacts;
mod engine_control;
mod engine_crash;
mod engine_health;
mod engine_https;
mod engine_idle;
mod engine_loads;
mod engine_logs;
mod engine_memory;
mod engine_outage;
mod engine_park;
mod engine_run;
mod engine_schema;
mod engine_schema_values;
mod engine_snapshot;
mod engine_snapshot_chunks;
mod engine_toast;
mod engine_toast_reform;
mod engine_txn_huge;
mod engine_txn_invariants;
mod engine_txn_multi;
mod engine_txn_multi_review;
mod engine_txn_review;
mod engine_txn_savepoint;
mod engine_txn_sim_restart;
mod engine_txn_stream;
mod engine_txn_stream_review;
mod engine_txn_table;
mod engine_txn_toast;
mod engine_types;
mod engine_values;
mod engine_verify;
mod engine_verify_review;
mod harness;
mod postgres_check;
mod postgres_checkpoint;
mod postgres_connect;
mod postgres_failover;
mod postgres_failover_standby;
mod postgres_setup;
mod postgres_setup_order;
mod postgres_stream;
mod postgres_tail;
mod postgres_teardown;
mod postgres_tls;
mod sink_csv;
mod sink_csv_review;
mod sink_setup;
mod sink_starrocks;
mod smoke;

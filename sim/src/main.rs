//! `starrocks-sim` binary: a StarRocks-compatible test and demo stand-in (not a database).
//! All work happens in the library; see `cli.rs` for flags.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}

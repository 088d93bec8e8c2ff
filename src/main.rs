//! The `starwal` binary: all of it lives in the library; see `cli.rs`.

fn main() {
    std::process::exit(starwal::cli::main());
}

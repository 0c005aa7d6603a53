//! The `stackgen` binary: parses the command line, runs it, exits 0 (ok), 1 (invalid input) or
//! 2 (usage or I/O error).

use std::process::ExitCode;

/// mimalloc: the router parses and stores many small strings per alert; this allocator measured
/// clearly faster than the system one for that (see the README's performance section).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    stackgen::cli::main()
}

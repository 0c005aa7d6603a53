//! The `stackgen` binary: parses the command line, runs it, exits 0 (ok), 1 (invalid input) or
//! 2 (usage or I/O error).

use std::process::ExitCode;

fn main() -> ExitCode {
    stackgen::cli::main()
}

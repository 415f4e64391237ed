use std::process::ExitCode;

fn main() -> ExitCode {
    kamwatch::cli::main()
}

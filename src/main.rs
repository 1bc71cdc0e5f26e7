//! The `convoy` binary: parse arguments, set up logging, run, map errors to an exit code.

fn main() -> std::process::ExitCode {
    convoy::cli::main()
}

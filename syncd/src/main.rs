//! The `syncd` binary: everything lives in the library (`syncd::cli`).

fn main() -> std::process::ExitCode {
    syncd::cli::main()
}

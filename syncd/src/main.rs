//! The `syncd` binary: everything lives in the library (`syncd::cli`).

/// mimalloc instead of the system allocator: a synced row costs a few dozen small
/// allocations (decoded columns, canonical JSON, hash, SQL values) and glibc's malloc and
/// free took about a fifth of the daemon's CPU in a profile of an initial load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    syncd::cli::main()
}

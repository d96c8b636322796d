//! The `syncd` binary: everything lives in the library (`syncd::cli`).

/// mimalloc instead of the system allocator: a synced row costs a few dozen small
/// allocations (decoded columns, canonical JSON, hash, SQL values) and glibc's malloc and
/// free took about a fifth of the daemon's CPU in a profile of an initial load (the load ran
/// 1.23–1.28× faster with mimalloc, side by side in `benches/sync.rs`). Built with `no_thp`:
/// with transparent huge pages the peak RSS of a 1M-row load was 74–98 MB instead of 37 MB,
/// at the same speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    syncd::cli::main()
}

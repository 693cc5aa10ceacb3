// mimalloc: under a boot storm glibc's per-thread arenas fragment and hold
// several times the memory in use; mimalloc keeps resident memory close to
// it (measured: see benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    autoprov::cli::main()
}

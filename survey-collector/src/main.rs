//! The `survey-collector` binary: see `survey-collector --help`.

/// Decoding allocates many small strings; mimalloc serves them fast.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    survey_collector::run()
}

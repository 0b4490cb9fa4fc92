//! The `mesh-llm` binary.

fn main() -> std::process::ExitCode {
    mesh_llm::cli::main()
}

//! A stand-in for llama.cpp's `llama-server`: same flags, same `/health`,
//! with fault modes. See `mesh_llm::standin`.

fn main() -> std::process::ExitCode {
    mesh_llm::standin::main()
}

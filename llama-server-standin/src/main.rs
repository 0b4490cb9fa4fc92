//! `llama-server-standin`: a test-only stand-in for llama.cpp's
//! `llama-server` (same flags, same HTTP protocol, fault modes); see the
//! library's documentation.

fn main() -> std::process::ExitCode {
    llama_server_standin::main()
}

//! The `survey-collector` binary: see `survey-collector --help`.

fn main() -> std::process::ExitCode {
    survey_collector::cli::main()
}

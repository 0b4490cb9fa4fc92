#[derive(Debug)]
struct PlainError;

#[derive(Debug, survey::FailureReason)]
enum LaunchError {
    #[survey(reason = "spawn_failed")]
    Spawn,
    #[survey(transparent)]
    Plain(PlainError),
    #[survey(transparent)]
    Io { source: std::io::Error },
}

#[derive(Debug, survey::FailureReason)]
#[survey(transparent)]
struct Wrapper(PlainError);

fn main() {}

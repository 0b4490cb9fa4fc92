#[derive(Debug, survey::FailureReason)]
enum LaunchError {
    #[survey(reason = "spawn_failed")]
    Spawn,
    Forgotten,
    AlsoForgotten(u32),
}

#[derive(Debug, survey::FailureReason)]
enum Transparent {
    #[survey(transparent)]
    TwoFields(survey::FailureKind, u32),
}

#[derive(Debug, survey::FailureReason)]
struct NoReason;

fn main() {}

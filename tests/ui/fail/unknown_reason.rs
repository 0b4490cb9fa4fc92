#[derive(Debug, survey::FailureReason)]
enum LaunchError {
    #[survey(reason = "healthtimeout")]
    Timeout,
}

fn main() {}

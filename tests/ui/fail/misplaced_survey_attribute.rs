#[derive(Debug, survey::FailureReason)]
#[survey(reason = "other")]
enum OnEnum {
    #[survey(reason = "spawn_failed")]
    Spawn,
}

#[derive(Debug, survey::FailureReason)]
enum OnVariantField {
    #[survey(reason = "spawn_failed")]
    Spawn(#[survey(reason = "other")] std::io::Error),
    #[survey(reason = "health_timeout")]
    Timeout {
        #[survey(transparent)]
        after_ms: u64,
    },
}

#[derive(Debug, survey::FailureReason)]
#[survey(transparent)]
struct OnStructField(#[survey(transparent)] OnEnum);

fn main() {}

//! `survey-fleet`: a simulated fleet of survey nodes, for proving that the
//! collector's answers are right.
//!
//! Many node processes, each a real survey exporter with its own instance
//! id and hardware, launch models drawn from a seeded ground truth
//! ([`truth`]): failure probabilities and reasons per model × hardware ×
//! context size, crash probabilities after launch, launch-time and uptime
//! distributions, and the requests each loaded model serves (how they end,
//! decode and prompt speeds per model × hardware × context size, token
//! counts), recorded with the inference metrics on. A simulated clock ([`clock`]),
//! given to survey through `Setup::clock`, lets minutes of launching and days of uptime pass in an instant, so every
//! duration lands in its real histogram bucket. The nodes export through the
//! real OTLP/HTTP exporter to a real `survey-collector`, and each says what
//! really happened ([`node::Launch`]), which the report must recover.
//!
//! ```sh
//! cargo run -p survey-fleet -- --nodes 20 --launches 25 --seed 7
//! ```

pub mod clock;
pub mod fleet;
pub mod idle;
pub mod node;
pub mod rng;
pub mod truth;

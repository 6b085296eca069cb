//! Logging, set up in one place: `HOOP_LOG` filter (default `warn,hoop=info`), text or JSON
//! (`HOOP_LOG_FORMAT=json`) on stderr, which journald captures. Payload values are never logged:
//! the audit trail is the place for them.

use tracing_subscriber::{EnvFilter, fmt};

pub const DEFAULT_FILTER: &str = "warn,hoop=info";

pub fn init() {
    let filter =
        EnvFilter::try_from_env("HOOP_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("HOOP_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let res = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
    // a second init (tests) keeps the first subscriber
    let _ = res;
}

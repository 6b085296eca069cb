//! Logging, set up in one place: `HOOP_LOG` filter (default `warn,hoop=info`), text or JSON
//! (`HOOP_LOG_FORMAT=json`) on stderr. Payload values are never logged: the audit trail is the
//! place for them.
//!
//! Journald-friendly: colours only when stderr is a terminal (and `NO_COLOR` is unset); when
//! stderr is the journal (systemd's `JOURNAL_STREAM` names it) no timestamps either, since the
//! journal stamps every line itself.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

pub const DEFAULT_FILTER: &str = "warn,hoop=info";

pub fn init() {
    let filter =
        EnvFilter::try_from_env("HOOP_LOG").unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let json = std::env::var("HOOP_LOG_FORMAT").is_ok_and(|v| v == "json");
    let journal = stderr_is_journal();
    let ansi =
        !journal && std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let res = match (json, journal) {
        (true, _) => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
        (false, true) => builder.without_time().try_init(),
        (false, false) => builder.try_init(),
    };
    // a second init (tests) keeps the first subscriber
    let _ = res;
}

/// `JOURNAL_STREAM` is `DEVICE:INODE` of the stream systemd connected to the journal; it is
/// inherited by children whose stderr may point elsewhere, so it counts only if it matches.
fn stderr_is_journal() -> bool {
    use std::os::{fd::AsFd, unix::fs::MetadataExt};
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let Ok(fd) = std::io::stderr().as_fd().try_clone_to_owned() else {
        return false;
    };
    let Ok(meta) = std::fs::File::from(fd).metadata() else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

//! The systemd service protocol (`Type=notify`): READY once the node protects (programs
//! attached, guard in place, listeners up), RELOADING around a SIGHUP reload, STOPPING at
//! shutdown, and a STATUS line for `systemctl status`. Without `NOTIFY_SOCKET` (not started by
//! systemd) every call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager");
    }
}

/// The node protects: systemd may start what is ordered after it.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A step of the start that may take long (verifying a large audit trail): systemd's start
/// timeout is pushed [`START_STEP`] past now, and `systemctl status` shows `status`.
pub fn starting(status: &str) {
    let usec = u32::try_from(START_STEP.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(status),
    ]);
}

/// How far each [`starting`] pushes the start timeout: far more than one step takes (one
/// audit segment, 64 MiB by default: under a second on the CI machine).
pub const START_STEP: std::time::Duration = std::time::Duration::from_secs(60);

/// A reload starts; [`reloaded`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The reload ended (applied or refused: the node protects either way).
pub fn reloaded(status: &str) {
    ready(status);
}

pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping; the redirect and guard stay"),
    ]);
}

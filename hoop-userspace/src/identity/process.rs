//! Process facts of a redirected connection's caller, read from /proc and verified against the
//! kernel's record (pid + start time), so a pid reused by another process is never trusted.

use std::path::Path;

use hoop_common::OrigDst;
use serde::Serialize;

/// What we know about the process that called connect().
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct ProcessFacts {
    /// Thread-group id (the process id).
    pub pid: u32,
    /// Thread that called connect().
    pub tid: u32,
    /// From the kernel at connect() time (authoritative).
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// From /proc, only when the process still runs and its start time matches the kernel's
    /// record; otherwise `None` and `unverified` says why.
    pub exe: Option<String>,
    pub cmdline: Option<Vec<String>>,
    pub cgroup: Option<String>,
    /// Start time in clock ticks since boot (/proc/PID/stat field 22).
    pub start_ticks: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unverified: Option<&'static str>,
}

impl ProcessFacts {
    /// Reads /proc for the caller recorded in `orig`.
    pub fn read(orig: &OrigDst) -> Self {
        Self::read_from(Path::new("/proc"), orig, clock_ticks())
    }

    fn read_from(proc_root: &Path, orig: &OrigDst, ticks_per_s: u64) -> Self {
        let mut f = Self {
            pid: orig.tgid,
            tid: orig.pid,
            uid: orig.uid,
            gid: orig.gid,
            cgroup_id: orig.cgroup_id,
            ..Self::default()
        };
        let dir = proc_root.join(orig.tgid.to_string());
        let Some(start) = std::fs::read_to_string(dir.join("stat"))
            .ok()
            .and_then(|s| stat_start_ticks(&s))
        else {
            f.unverified = Some("process exited");
            return f;
        };
        if orig.start_boottime_ns == 0 {
            f.unverified = Some("kernel start time unavailable");
            return f;
        }
        let want = orig.start_boottime_ns / (1_000_000_000 / ticks_per_s);
        if start != want {
            f.unverified = Some("pid reused by another process");
            return f;
        }
        f.start_ticks = Some(start);
        f.exe = std::fs::read_link(dir.join("exe"))
            .ok()
            .map(|p| p.display().to_string());
        f.cmdline = std::fs::read(dir.join("cmdline")).ok().map(|b| {
            b.split(|c| *c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect()
        });
        f.cgroup = std::fs::read_to_string(dir.join("cgroup"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("0::").map(str::to_string))
            });
        f
    }
}

/// Field 22 of /proc/PID/stat; the command name (field 2) may contain spaces and parentheses,
/// so count from the last ')'.
pub(crate) fn stat_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_start_time_past_odd_comm() {
        let stat =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(stat_start_ticks(stat), Some(987654));
    }

    fn own_orig() -> OrigDst {
        let pid = std::process::id();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let ticks = stat_start_ticks(&stat).unwrap();
        OrigDst {
            tgid: pid,
            pid,
            start_boottime_ns: ticks * (1_000_000_000 / clock_ticks()) + 3, // sub-tick remainder
            ..OrigDst::default()
        }
    }

    #[test]
    fn verified_process_gets_proc_facts() {
        let f = ProcessFacts::read(&own_orig());
        assert_eq!(f.unverified, None);
        assert_eq!(
            f.exe.as_deref(),
            std::env::current_exe()
                .ok()
                .map(|p| p.display().to_string())
                .as_deref()
        );
        assert!(f.cmdline.unwrap()[0].contains("hoop_userspace"));
        assert!(f.cgroup.is_some());
    }

    #[test]
    fn reused_pid_is_not_trusted() {
        let mut o = own_orig();
        o.start_boottime_ns += 5_000_000_000; // "started" 5 s later: another process
        let f = ProcessFacts::read(&o);
        assert_eq!(f.unverified, Some("pid reused by another process"));
        assert_eq!(f.exe, None);
        assert_eq!(f.cmdline, None);
    }
}

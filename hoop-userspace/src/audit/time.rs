//! RFC 3339 UTC timestamps with nanoseconds in one fixed-width form
//! (`2026-05-25T10:11:12.123456789Z`), so that text order is time order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Length of every timestamp the log writes.
pub const TIME_LEN: usize = 30;

/// Formats `t` (clamped to 1970..=9999) into the fixed form.
pub fn format(t: SystemTime) -> String {
    let mut buf = [0u8; TIME_LEN];
    write(&mut buf, t);
    String::from_utf8(buf.to_vec()).expect("timestamp is ASCII")
}

/// Writes the fixed form into `buf` without allocating (the append path calls this, twice a
/// statement: the date and time of day are formatted once per second and thread).
pub fn write(buf: &mut [u8; TIME_LEN], t: SystemTime) {
    use std::cell::Cell;
    thread_local! {
        /// The last second formatted, and its `YYYY-MM-DDTHH:MM:SS.` (`u64::MAX`: none yet).
        static SECOND: Cell<(u64, [u8; 20])> = const { Cell::new((u64::MAX, [0; 20])) };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs().min(253_402_300_799);
    let (last, head) = SECOND.get();
    if last == secs {
        buf[..20].copy_from_slice(&head);
        let mut nanos = since.subsec_nanos();
        for i in (20..29).rev() {
            buf[i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        buf[29] = b'Z';
        return;
    }
    write_whole(buf, t);
    SECOND.set((secs, buf[..20].try_into().expect("20 bytes")));
}

fn write_whole(buf: &mut [u8; TIME_LEN], t: SystemTime) {
    // Before 1970 only happens with a broken clock; the record still needs a valid time.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs().min(253_402_300_799); // 9999-12-31T23:59:59
    let (y, mo, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let fields = [
        (0, 4, y as u64),
        (5, 2, mo as u64),
        (8, 2, d as u64),
        (11, 2, rem / 3600),
        (14, 2, rem % 3600 / 60),
        (17, 2, rem % 60),
        (20, 9, since.subsec_nanos() as u64),
    ];
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    for (start, width, mut value) in fields {
        for i in (start..start + width).rev() {
            buf[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
}

/// Parses the fixed form exactly (any other spelling is rejected: verify needs one spelling
/// per instant).
pub fn parse(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != TIME_LEN {
        return None;
    }
    let punct = [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (29, b'Z'),
    ];
    if punct.iter().any(|&(i, c)| b[i] != c) {
        return None;
    }
    let num = |start: usize, width: usize| -> Option<u64> {
        b[start..start + width].iter().try_fold(0u64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u64::from(c - b'0'))
        })
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (h, mi, sec, ns) = (num(11, 2)?, num(14, 2)?, num(17, 2)?, num(20, 9)?);
    if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let days = days_from_civil(y as i64, mo as u32, d as u32) as u64;
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    Some(UNIX_EPOCH + Duration::new(secs, ns as u32))
}

/// A time a person typed (`hoopctl audit export --since/--until`): any RFC 3339 date-time —
/// with or without a fraction, `Z` or a `±hh:mm` offset, `T`/`t` — or a bare date, meaning
/// its midnight UTC. Unlike [`parse`], which reads what the log wrote, many spellings of one
/// instant are fine here.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime, String> {
    use ::time::{
        Date, OffsetDateTime, format_description, format_description::well_known::Rfc3339,
    };
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.into());
    }
    let date = format_description::parse_borrowed::<2>("[year]-[month]-[day]")
        .expect("a valid description");
    if let Ok(d) = Date::parse(s, &date) {
        return Ok(d.midnight().assume_utc().into());
    }
    Err(format!(
        "bad time {s:?}: expected an RFC 3339 date-time (2026-12-07T10:00:00Z, \
         2026-12-07T11:00:00.5+01:00) or a date (2026-12-07: its midnight UTC)"
    ))
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's civil calendar algorithms (public domain), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400) as u64;
    let mp = u64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + u64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

#[cfg(test)]
mod tests;

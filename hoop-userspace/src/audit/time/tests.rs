use std::time::{Duration, UNIX_EPOCH};

use super::*;

#[test]
fn formats_known_instants() {
    assert_eq!(format(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
    let t = UNIX_EPOCH + Duration::new(951_782_400 + 86_399, 5); // 2000-02-29T23:59:59
    assert_eq!(format(t), "2000-02-29T23:59:59.000000005Z");
    let t = UNIX_EPOCH + Duration::new(1_779_703_872, 123_456_789);
    assert_eq!(format(t), "2026-05-25T10:11:12.123456789Z");
}

#[test]
fn parse_inverts_format_across_days() {
    for day in (0..200_000u64).step_by(37) {
        let t = UNIX_EPOCH
            + Duration::new(
                day * 86_400 + day % 86_400,
                (day * 7919) as u32 % 1_000_000_000,
            );
        let s = format(t);
        assert_eq!(parse(&s), Some(t), "{s}");
    }
}

#[test]
fn text_order_is_time_order() {
    let a = format(UNIX_EPOCH + Duration::new(1_000, 999_999_999));
    let b = format(UNIX_EPOCH + Duration::new(1_001, 0));
    assert!(a < b);
}

#[test]
fn rejects_other_spellings() {
    for bad in [
        "2026-05-25T10:11:12Z",
        "2026-05-25T10:11:12.123456789+00:00",
        "2026-02-30T10:11:12.123456789Z",
        "2026-05-25t10:11:12.123456789Z",
        "2026-05-25T24:11:12.123456789Z",
        "1969-12-31T23:59:59.000000000Z",
    ] {
        assert_eq!(parse(bad), None, "{bad}");
    }
}

#[test]
fn the_second_cache_writes_what_a_whole_format_writes() {
    let mut whole = [0u8; TIME_LEN];
    let mut cached = [0u8; TIME_LEN];
    // the same second again (cached), a later one, back to an earlier one, the clamp
    for (secs, nanos) in [
        (1_779_703_872, 1),
        (1_779_703_872, 999_999_999),
        (1_779_703_872, 0),
        (1_779_703_873, 5),
        (1_779_703_872, 42),
        (0, 0),
        (300_000_000_000, 7),
        (300_000_000_001, 8),
    ] {
        let t = UNIX_EPOCH + Duration::new(secs, nanos);
        write(&mut cached, t);
        write_whole(&mut whole, t);
        assert_eq!(cached, whole, "{secs}.{nanos}");
    }
}

/// What a person may type for `export --since/--until`: the spellings RFC 3339 allows for one
/// instant all name it; anything else is refused with the forms it takes.
#[test]
fn typed_times_take_every_rfc3339_spelling() {
    let at = |secs: u64, nanos: u32| Ok(UNIX_EPOCH + Duration::new(secs, nanos));
    // 2026-12-07T10:00:00Z
    let ten = 1_796_637_600;
    assert_eq!(
        format(at(ten, 0).unwrap()),
        "2026-12-07T10:00:00.000000000Z"
    );
    for (typed, want) in [
        ("2026-12-07T10:00:00Z", at(ten, 0)),
        ("2026-12-07t10:00:00z", at(ten, 0)),
        ("2026-12-07T11:00:00+01:00", at(ten, 0)),
        ("2026-12-07T05:30:00-04:30", at(ten, 0)),
        ("2026-12-07T10:00:00.5Z", at(ten, 500_000_000)),
        ("2026-12-07T10:00:00.000000001Z", at(ten, 1)),
        ("2026-12-07", at(ten - 10 * 3600, 0)),
    ] {
        assert_eq!(parse_rfc3339(typed), want, "{typed}");
    }
    // the log's own form is one of them
    let t = UNIX_EPOCH + Duration::new(1_779_703_872, 123_456_789);
    assert_eq!(parse_rfc3339(&format(t)), Ok(t));
    for bad in [
        "",
        "yesterday",
        "2026-12-07T10:00",
        "2026-12-07T10:00:00",
        "2026-13-01",
        "2026-02-30T10:00:00Z",
        "2026-12-07T25:00:00Z",
        " 2026-12-07T10:00:00Z",
        "1796637600",
    ] {
        let e = parse_rfc3339(bad).unwrap_err();
        assert!(
            e.contains("RFC 3339") && e.contains(&format!("{bad:?}")),
            "{e}"
        );
    }
}

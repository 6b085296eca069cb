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

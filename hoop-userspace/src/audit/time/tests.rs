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

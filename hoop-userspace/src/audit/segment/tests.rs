use super::*;

#[test]
fn names_round_trip_and_sort() {
    assert_eq!(segment_name(42), "seg-00000000000000000042.log");
    assert_eq!(parse_segment_name(&segment_name(u64::MAX)), Some(u64::MAX));
    assert_eq!(parse_segment_name("seg-42.log"), None);
    assert_eq!(parse_segment_name("seg-0000000000000000004x.log"), None);
    assert!(segment_name(9) < segment_name(10));
}

#[test]
fn lines_report_offsets_and_torn_tail() {
    let mut lines = Lines::new(&b"ab\n\ncd"[..]);
    let l = lines.next_line().unwrap().unwrap();
    assert_eq!(
        (l.number, l.offset, l.bytes, l.complete),
        (1, 0, &b"ab"[..], true)
    );
    let l = lines.next_line().unwrap().unwrap();
    assert_eq!(
        (l.number, l.offset, l.bytes, l.complete),
        (2, 3, &b""[..], true)
    );
    let l = lines.next_line().unwrap().unwrap();
    assert_eq!(
        (l.number, l.offset, l.bytes, l.complete),
        (3, 4, &b"cd"[..], false)
    );
    assert!(lines.next_line().unwrap().is_none());
    assert_eq!(lines.position(), 6);
}

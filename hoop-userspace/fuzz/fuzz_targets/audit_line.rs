#![no_main]
//! The line parsers `hoopctl audit verify` runs over a directory someone may have edited: a
//! segment's record and a checkpoint, from any bytes. Errors are findings, never panics.
libfuzzer_sys::fuzz_target!(|line: &[u8]| {
    let _ = hoop_userspace::audit::Record::parse_line(line);
    let _ = hoop_userspace::audit::Checkpoint::parse_line(line);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|sql: &str| {
    let _ = hoop_userspace::classify::classify(sql);
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = hoop_userspace::wire::postgres::backend::decode(data);
});

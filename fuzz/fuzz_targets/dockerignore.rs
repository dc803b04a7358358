//! Read arbitrary .dockerignore text and match paths against it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    strata_dockerfile::fuzz_entry_dockerignore(&text);
});

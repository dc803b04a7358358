//! Parse arbitrary text as a Dockerfile, then run every later stage on it:
//! none of them may panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = strata_dockerfile::fuzz_entry_dockerfile(&text);
});

use std::time::Duration;

use chrono::{FixedOffset, TimeZone, Utc};
use strata_format::*;

#[test]
fn human_size_with_precision_3_as_docker_images() {
    let cases: &[(f64, &str)] = &[
        (0.0, "0B"),
        (1.0, "1B"),
        (999.0, "999B"),
        (1000.0, "1kB"),
        (1024.0, "1.02kB"),
        (1500.0, "1.5kB"),
        (4_260_000.0, "4.26MB"),
        (7_796_327.0, "7.8MB"),
        (72_800_000.0, "72.8MB"),
        (123_456_789.0, "123MB"),
        (1_200_000_000.0, "1.2GB"),
        (999_499.0, "999kB"),
        // Rounds to 1000 significant-digit-wise: Go's %.3g switches to exponent form.
        (999_999.0, "1e+03kB"),
        (100_000.0, "100kB"),
        (77_800_000.0, "77.8MB"),
    ];
    for (size, want) in cases {
        assert_eq!(human_size_with_precision(*size, 3), *want, "size {size}");
    }
}

#[test]
fn human_size_go_units_test_vectors() {
    const KB: f64 = 1000.0;
    const MB: f64 = 1000.0 * KB;
    const GB: f64 = 1000.0 * MB;
    const TB: f64 = 1000.0 * GB;
    const PB: f64 = 1000.0 * TB;
    assert_eq!(human_size(1000.0), "1kB");
    assert_eq!(human_size(1024.0), "1.024kB");
    assert_eq!(human_size(1_000_000.0), "1MB");
    assert_eq!(human_size(1_048_576.0), "1.049MB");
    assert_eq!(human_size(2.0 * MB), "2MB");
    assert_eq!(human_size(3.42 * GB), "3.42GB");
    assert_eq!(human_size(5.372 * TB), "5.372TB");
    assert_eq!(human_size(2.22 * PB), "2.22PB");
    assert_eq!(human_size(10_000_000_000_000.0 * PB), "1e+04YB");
}

#[test]
fn bytes_size_go_units_test_vectors() {
    const KIB: f64 = 1024.0;
    const MIB: f64 = 1024.0 * KIB;
    const GIB: f64 = 1024.0 * MIB;
    const TIB: f64 = 1024.0 * GIB;
    const PIB: f64 = 1024.0 * TIB;
    assert_eq!(bytes_size(1024.0), "1KiB");
    assert_eq!(bytes_size(1024.0 * 1024.0), "1MiB");
    assert_eq!(bytes_size(2.0 * MIB), "2MiB");
    assert_eq!(bytes_size(3.42 * GIB), "3.42GiB");
    assert_eq!(bytes_size(5.372 * TIB), "5.372TiB");
    assert_eq!(bytes_size(2.22 * PIB), "2.22PiB");
    assert_eq!(bytes_size(KIB * KIB * KIB * KIB * KIB * PIB), "1.049e+06YiB");
    assert_eq!(bytes_size(1536.0), "1.5KiB");
    assert_eq!(bytes_size(0.0), "0B");
}

#[test]
fn go_g_formatting_edge_cases() {
    assert_eq!(go_format_g(0.0001234, 3), "0.000123");
    assert_eq!(go_format_g(0.00001234, 3), "1.23e-05");
    assert_eq!(go_format_g(-1.5, 3), "-1.5");
    assert_eq!(go_format_g(100.0, 3), "100");
    assert_eq!(go_format_g(1234.0, 3), "1.23e+03");
    assert_eq!(go_format_g(2.5, 1), "2");
    assert_eq!(go_format_g(f64::INFINITY, 3), "+Inf");
    assert_eq!(go_format_g(f64::NAN, 3), "NaN");
    assert_eq!(units::go_format_float_v(7_796_327.0), "7.796327e+06");
    assert_eq!(units::go_format_float_v(123_456.0), "123456");
    assert_eq!(units::go_format_float_v(0.5), "0.5");
    assert_eq!(units::go_format_float_v(1e6), "1e+06");
}

#[test]
fn from_human_size_and_ram_in_bytes() {
    assert_eq!(from_human_size("32").unwrap(), 32);
    assert_eq!(from_human_size("32b").unwrap(), 32);
    assert_eq!(from_human_size("32K").unwrap(), 32_000);
    assert_eq!(from_human_size("32kb").unwrap(), 32_000);
    assert_eq!(from_human_size("32Mb").unwrap(), 32_000_000);
    assert_eq!(from_human_size("32Pb").unwrap(), 32_000_000_000_000_000);
    assert_eq!(from_human_size("32.5kB").unwrap(), 32_500);
    assert_eq!(from_human_size("32.5 kB").unwrap(), 32_500);
    assert_eq!(from_human_size("32.5 B").unwrap(), 32);
    assert_eq!(from_human_size("0.3 K").unwrap(), 300);
    for bad in ["", "hello", "-32", ".3kB", " 32 ", "32m b", "32bm"] {
        let err = from_human_size(bad).unwrap_err();
        assert_eq!(err.to_string(), format!("invalid size: '{bad}'"));
    }
    assert_eq!(ram_in_bytes("32k").unwrap(), 32 * 1024);
    assert_eq!(ram_in_bytes("32Kib").unwrap(), 32 * 1024);
    assert_eq!(ram_in_bytes("32KIB").unwrap(), 32 * 1024);
    assert_eq!(ram_in_bytes("32Gb").unwrap(), 32 << 30);
    assert_eq!(ram_in_bytes("32P").unwrap(), 32 << 50);
    assert_eq!(ram_in_bytes("32.3").unwrap(), 32);
    assert_eq!(ram_in_bytes("32.3 mb").unwrap(), (32.3 * 1048576.0) as i64);
    assert!(ram_in_bytes("32bm").is_err());
}

#[test]
fn human_duration_go_units_test_vectors() {
    let s = Duration::from_secs;
    let min = 60;
    let hour = 3600;
    let day = 24 * hour;
    let week = 7 * day;
    let month = 30 * day;
    let year = 365 * day;
    let cases: &[(Duration, &str)] = &[
        (Duration::from_millis(450), "Less than a second"),
        (s(1), "1 second"),
        (s(45), "45 seconds"),
        (s(59), "59 seconds"),
        (s(60), "About a minute"),
        (s(3 * min), "3 minutes"),
        (s(35 * min + 40), "35 minutes"),
        (s(59 * min), "59 minutes"),
        (s(hour), "About an hour"),
        (s(hour + 29 * min), "About an hour"),
        (s(hour + 31 * min), "2 hours"),
        (s(3 * hour + 29 * min), "3 hours"),
        (s(3 * hour + 31 * min), "4 hours"),
        (s(24 * hour), "24 hours"),
        (s(day + 12 * hour), "36 hours"),
        (s(2 * day), "2 days"),
        (s(13 * day + 5 * hour), "13 days"),
        (s(2 * week), "2 weeks"),
        (s(4 * week + 3 * day), "4 weeks"),
        (s(month), "4 weeks"),
        (s(month + 2 * week), "6 weeks"),
        (s(2 * month), "2 months"),
        (s(3 * month + week), "3 months"),
        (s(13 * month), "13 months"),
        (s(24 * month), "24 months"),
        (s(24 * month + 2 * week), "2 years"),
        (s(3 * year + 2 * month), "3 years"),
    ];
    for (d, want) in cases {
        assert_eq!(human_duration(*d), *want, "{d:?}");
    }
}

#[test]
fn created_since_appends_ago() {
    assert_eq!(created_since(1_000, 1_000 + 14 * 86_400), "2 weeks ago");
    assert_eq!(created_since(1_000, 1_000), "Less than a second ago");
    // Clock skew: a creation time in the future.
    assert_eq!(created_since(2_000, 1_000), "Less than a second ago");
}

#[test]
fn go_time_strings() {
    // 2024-01-02 03:04:05 UTC
    let secs = 1_704_164_645;
    assert_eq!(go_time_string_unix(secs).unwrap(), "2024-01-02 03:04:05 +0000 UTC");
    assert_eq!(rfc3339_unix(secs).unwrap(), "2024-01-02T03:04:05Z");

    let cet = FixedOffset::east_opt(3600).unwrap();
    let dt = cet.with_ymd_and_hms(2024, 1, 2, 4, 4, 5).unwrap();
    assert_eq!(go_time_string(&dt, Some("CET")), "2024-01-02 04:04:05 +0100 CET");
    assert_eq!(go_time_string(&dt, None), "2024-01-02 04:04:05 +0100 +01");
    let ist = FixedOffset::east_opt(5 * 3600 + 1800).unwrap();
    let dt2 = ist.with_ymd_and_hms(2024, 1, 2, 8, 34, 5).unwrap();
    assert_eq!(go_time_string(&dt2, None), "2024-01-02 08:34:05 +0530 +0530");
    assert_eq!(rfc3339(&dt), "2024-01-02T04:04:05+01:00");

    let with_nanos = Utc.timestamp_opt(secs, 123_400_000).unwrap();
    assert_eq!(rfc3339_nano(&with_nanos), "2024-01-02T03:04:05.1234Z");
    assert_eq!(rfc3339_nano(&Utc.timestamp_opt(secs, 0).unwrap()), "2024-01-02T03:04:05Z");
    assert_eq!(
        go_time_string(&with_nanos.fixed_offset(), None),
        "2024-01-02 03:04:05.1234 +0000 UTC"
    );
    assert!(go_time_string_unix(i64::MAX).is_err());
}

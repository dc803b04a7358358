//! Human-readable sizes, durations and timestamps, byte-for-byte as Docker prints them.
//!
//! The size and duration functions follow the behaviour of `github.com/docker/go-units`
//! (`HumanSizeWithPrecision`, `HumanSize`, `BytesSize`, `FromHumanSize`, `RAMInBytes`,
//! `HumanDuration`); the timestamp functions follow Go's `time.Time.String()` and
//! `time.RFC3339` / `time.RFC3339Nano` layouts, which is what the Docker CLI shows in
//! `CreatedAt` columns.

use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset, SecondsFormat, TimeZone, Utc};

use crate::FormatError;

const DECIMAL_ABBRS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY_ABBRS: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Formats `v` like Go's `fmt.Sprintf("%.*g", precision, v)`.
///
/// Go's `%g` differs from every Rust formatting mode: it picks `%e` or `%f` from the
/// decimal exponent, drops trailing zeros, and writes exponents with at least two digits
/// (`1e+03`). A precision of 0 is treated as 1, as Go does.
pub fn go_format_g(v: f64, precision: usize) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let prec = precision.max(1);
    let a = v.abs();
    // Correctly rounded to `prec` significant digits; Rust's `{:e}` gives "d.ddde<exp>".
    let (digits, dp) =
        if a == 0.0 { (Vec::new(), 0) } else { decimal_digits(&format!("{:.*e}", prec - 1, a)) };
    let nd = digits.len() as i64;
    let mut eprec = prec as i64;
    if eprec > nd && nd >= dp {
        eprec = nd;
    }
    format_g_digits(v < 0.0, &digits, dp, prec as i64, eprec)
}

/// Formats `v` like Go's `fmt.Sprint(v)` / `%v` for a float64: the shortest
/// representation that reads back as `v`, in `%e` form when the exponent is < -4 or >= 6
/// (`7796327.0` prints as `7.796327e+06`, as in Docker's raw-JSON inspect output).
pub fn go_format_float_v(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let a = v.abs();
    let (digits, dp) = if a == 0.0 { (Vec::new(), 0) } else { decimal_digits(&format!("{a:e}")) };
    let nd = digits.len() as i64;
    format_g_digits(v < 0.0, &digits, dp, nd.max(1), 6)
}

/// Splits Rust's `{:e}` output into significant digits (trailing zeros removed) and the
/// position of the decimal point (Go's `decimalSlice.dp`).
fn decimal_digits(s: &str) -> (Vec<u8>, i64) {
    let (mantissa, exp) = s.split_once('e').unwrap_or((s, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let mut digits: Vec<u8> = mantissa.bytes().filter(|b| b.is_ascii_digit()).collect();
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    (digits, exp + 1)
}

/// The `%g` branch of Go's `strconv.FormatFloat`, given rounded digits.
fn format_g_digits(neg: bool, digits: &[u8], dp: i64, prec: i64, eprec: i64) -> String {
    let nd = digits.len() as i64;
    let exp = dp - 1;
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    let digit_at = |i: i64| -> char {
        if i >= 0 && i < nd {
            digits[i as usize] as char
        } else {
            '0'
        }
    };
    if exp < -4 || exp >= eprec {
        // %e with prec-1 digits after the point, capped to the digits we have.
        let p = prec.min(nd.max(1)) - 1;
        out.push(digit_at(0));
        if p > 0 {
            out.push('.');
            for i in 1..=p {
                out.push(digit_at(i));
            }
        }
        out.push('e');
        let e = if nd == 0 { 0 } else { exp };
        out.push(if e < 0 { '-' } else { '+' });
        let ea = e.unsigned_abs();
        if ea < 10 {
            out.push('0');
        }
        out.push_str(&ea.to_string());
        return out;
    }
    // %f with max(prec - dp, 0) digits after the point.
    let p = if prec > dp { nd } else { prec };
    let frac = (p - dp).max(0);
    if dp > 0 {
        for i in 0..dp {
            out.push(digit_at(i));
        }
    } else {
        out.push('0');
    }
    if frac > 0 {
        out.push('.');
        for i in 0..frac {
            out.push(digit_at(dp + i));
        }
    }
    out
}

fn size_and_unit(mut size: f64, base: f64, map: &[&'static str]) -> (f64, &'static str) {
    let mut i = 0;
    while size >= base && i < map.len() - 1 {
        size /= base;
        i += 1;
    }
    (size, map[i])
}

/// go-units `HumanSizeWithPrecision`: decimal (SI) units, `precision` significant digits.
///
/// `docker images` uses precision 3: `human_size_with_precision(4_260_000.0, 3) == "4.26MB"`.
pub fn human_size_with_precision(size: f64, precision: usize) -> String {
    let (s, unit) = size_and_unit(size, 1000.0, &DECIMAL_ABBRS);
    format!("{}{}", go_format_g(s, precision), unit)
}

/// go-units `HumanSize`: decimal units, 4 significant digits (`"1.024kB"`).
pub fn human_size(size: f64) -> String {
    human_size_with_precision(size, 4)
}

/// go-units `BytesSize`: binary units, 4 significant digits (`"3.42GiB"`).
pub fn bytes_size(size: f64) -> String {
    let (s, unit) = size_and_unit(size, 1024.0, &BINARY_ABBRS);
    format!("{}{}", go_format_g(s, 4), unit)
}

fn parse_size(input: &str, base: i64) -> Result<i64, FormatError> {
    let invalid = || FormatError::InvalidSize(input.to_string());
    // ^(\d+(\.\d+)*) ?([kmgtp])?i?b?$  (case-insensitive), as go-units.
    let bytes = input.as_bytes();
    let mut i = 0;
    let start = i;
    loop {
        let ds = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == ds {
            return Err(invalid());
        }
        if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
            i += 1;
            continue;
        }
        break;
    }
    let number = &input[start..i];
    let mut rest = &input[i..];
    if let Some(r) = rest.strip_prefix(' ') {
        rest = r;
    }
    let rest = rest.to_ascii_lowercase();
    let mut chars = rest.as_str();
    let mut mul: i64 = 1;
    if let Some(c) = chars.chars().next() {
        let pow = match c {
            'k' => Some(1),
            'm' => Some(2),
            'g' => Some(3),
            't' => Some(4),
            'p' => Some(5),
            _ => None,
        };
        if let Some(pow) = pow {
            mul = base.pow(pow);
            chars = &chars[1..];
        }
    }
    if let Some(r) = chars.strip_prefix('i') {
        chars = r;
    }
    if let Some(r) = chars.strip_prefix('b') {
        chars = r;
    }
    if !chars.is_empty() {
        return Err(invalid());
    }
    let n: f64 = number.parse().map_err(|_| invalid())?;
    Ok((n * mul as f64) as i64)
}

/// go-units `FromHumanSize`: parses `"32kB"`, `"32.5 k"`, `"1g"` with decimal (SI) multipliers.
pub fn from_human_size(size: &str) -> Result<i64, FormatError> {
    parse_size(size, 1000)
}

/// go-units `RAMInBytes`: parses `"32m"`, `"1.5GiB"`, `"512k"` with binary multipliers.
pub fn ram_in_bytes(size: &str) -> Result<i64, FormatError> {
    parse_size(size, 1024)
}

/// go-units `HumanDuration`: `"Less than a second"`, `"About a minute"`, `"2 weeks"`, ...
pub fn human_duration(d: Duration) -> String {
    let secs_f = d.as_secs_f64();
    let seconds = d.as_secs();
    if seconds < 1 {
        return "Less than a second".to_string();
    }
    if seconds == 1 {
        return "1 second".to_string();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = seconds / 60;
    if minutes == 1 {
        return "About a minute".to_string();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs_f / 3600.0 + 0.5) as u64;
    if hours == 1 {
        return "About an hour".to_string();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs_f / 3600.0) as u64 / 24 / 365)
}

/// The `CREATED` column of `docker images` / `docker history`: `"<HumanDuration> ago"`.
///
/// `created` and `now` are Unix seconds. A creation time in the future (clock skew)
/// counts as zero elapsed time, as Go's negative durations do in `HumanDuration`.
pub fn created_since(created: i64, now: i64) -> String {
    let elapsed = now.saturating_sub(created).max(0) as u64;
    format!("{} ago", human_duration(Duration::from_secs(elapsed)))
}

fn go_zone_name(dt: &DateTime<FixedOffset>, zone: Option<&str>) -> String {
    if let Some(z) = zone.filter(|z| !z.is_empty()) {
        return z.to_string();
    }
    let off = dt.offset().fix().local_minus_utc();
    if off == 0 {
        return "UTC".to_string();
    }
    // Go writes an unnamed zone as -07 or -0730.
    let minutes = off.abs() / 60;
    let sign = if off < 0 { '-' } else { '+' };
    if minutes % 60 == 0 {
        format!("{sign}{:02}", minutes / 60)
    } else {
        format!("{sign}{:02}{:02}", minutes / 60, minutes % 60)
    }
}

/// Go's `time.Time.String()`: `"2006-01-02 15:04:05.999999999 -0700 MST"`.
///
/// This is what `docker images --format '{{.CreatedAt}}'` prints
/// (`"2024-01-02 03:04:05 +0000 UTC"`). Fractional seconds appear only when non-zero,
/// without trailing zeros. `zone` is the zone abbreviation (`"CET"`); without one, Go's
/// spelling of a nameless zone is used (`"UTC"` for offset zero, else `"+01"`).
pub fn go_time_string(dt: &DateTime<FixedOffset>, zone: Option<&str>) -> String {
    let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
    let nanos = dt.timestamp_subsec_nanos();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push(' ');
    s.push_str(&dt.format("%z").to_string());
    s.push(' ');
    s.push_str(&go_zone_name(dt, zone));
    s
}

/// [`go_time_string`] for a Unix timestamp shown in UTC (`"2024-01-02 03:04:05 +0000 UTC"`).
pub fn go_time_string_unix(secs: i64) -> Result<String, FormatError> {
    let dt = unix_to_utc(secs)?;
    Ok(go_time_string(&dt.fixed_offset(), None))
}

fn unix_to_utc(secs: i64) -> Result<DateTime<Utc>, FormatError> {
    Utc.timestamp_opt(secs, 0).single().ok_or(FormatError::InvalidTimestamp(secs))
}

/// Go's `time.RFC3339` layout: `"2024-01-02T03:04:05Z"` / `"2024-01-02T03:04:05+01:00"`.
/// `docker history --human=false` prints this in its CREATED AT column.
pub fn rfc3339<Tz: TimeZone>(dt: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    dt.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Go's `time.RFC3339Nano` layout: fractional seconds without trailing zeros, omitted
/// when zero (`"2024-01-02T03:04:05.1234Z"`); the form of `Created` in `docker inspect`.
pub fn rfc3339_nano<Tz: TimeZone>(dt: &DateTime<Tz>) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let base = dt.to_rfc3339_opts(SecondsFormat::Secs, true);
    let nanos = dt.timestamp_subsec_nanos();
    if nanos == 0 {
        return base;
    }
    let frac = format!("{nanos:09}");
    let frac = frac.trim_end_matches('0');
    // Insert the fraction after the seconds field (index 19: "YYYY-MM-DDTHH:MM:SS").
    match base.char_indices().nth(19) {
        Some((idx, _)) => format!("{}.{}{}", &base[..idx], frac, &base[idx..]),
        None => base,
    }
}

/// [`rfc3339`] for a Unix timestamp in UTC, as `docker history --human=false` prints it.
pub fn rfc3339_unix(secs: i64) -> Result<String, FormatError> {
    Ok(rfc3339(&unix_to_utc(secs)?))
}

//! The `created_by` text of history entries, as BuildKit's Dockerfile frontend writes it
//! (dockerfile2llb's `dispatch*` functions, as vendored by Docker 20.10): Go `fmt` verbs
//! applied to Go values, so `%q` of a `[]string`, `%v` of a map, `%q` of a struct pointer.
//! Tools that read history (`docker history`, image diffing) see the same text for an
//! image built by Strata as for one built by BuildKit.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use strata_oci::config::Healthcheck;

/// Go's `strconv.Quote`: `"..."` with Go escapes.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        escape_char(&mut out, c, '"');
    }
    out.push('"');
    out
}

/// Go's `%q` of an integer: the character literal of that code point (`'\x04'`);
/// values that are no valid code point print as U+FFFD, as in Go.
pub(crate) fn go_quote_rune(v: i64) -> String {
    let c = u32::try_from(v).ok().and_then(char::from_u32).unwrap_or('\u{FFFD}');
    let mut out = String::from("'");
    escape_char(&mut out, c, '\'');
    out.push('\'');
    out
}

fn escape_char(out: &mut String, c: char, quote: char) {
    match c {
        _ if c == quote || c == '\\' => {
            out.push('\\');
            out.push(c);
        }
        '\x07' => out.push_str("\\a"),
        '\x08' => out.push_str("\\b"),
        '\x0c' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\x0b' => out.push_str("\\v"),
        _ if go_is_print(c) => out.push(c),
        _ if (c as u32) < 0x20 || c == '\x7f' => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        _ if (c as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
        _ => {
            let _ = write!(out, "\\U{:08x}", c as u32);
        }
    }
}

/// Go's `unicode.IsPrint`, exact for ASCII; beyond it, control, format and separator
/// characters other than U+0020 count as unprintable (Rust has no category tables).
fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    let n = c as u32;
    let format = matches!(n, 0xAD | 0x600..=0x605 | 0x61C | 0x6DD | 0x70F | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
        | 0xFEFF | 0xFFF9..=0xFFFB | 0xE000..=0xF8FF | 0xF0000..);
    !(c.is_control() || c.is_whitespace() || format)
}

/// Go's `%v` of a `[]string`: `[a b]`.
pub(crate) fn go_list(v: &[String]) -> String {
    format!("[{}]", v.join(" "))
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quoted_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", q.join(" "))
}

/// Go's `time.Duration.String` of a count of nanoseconds: `30s`, `1m30s`, `1h0m0s`,
/// `1.5s`, `500ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    let neg = nanos < 0;
    let u = nanos.unsigned_abs();
    let frac = |v: u64, prec: u32| -> (String, u64) {
        let p = 10u64.pow(prec);
        let digits = format!("{:0width$}", v % p, width = prec as usize);
        let digits = digits.trim_end_matches('0');
        (if digits.is_empty() { String::new() } else { format!(".{digits}") }, v / p)
    };
    let body = if u == 0 {
        "0s".to_string()
    } else if u < 1_000 {
        format!("{u}ns")
    } else if u < 1_000_000 {
        let (f, i) = frac(u, 3);
        format!("{i}{f}µs")
    } else if u < 1_000_000_000 {
        let (f, i) = frac(u, 6);
        format!("{i}{f}ms")
    } else {
        let (f, secs) = frac(u, 9);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}{f}s")
        } else if m > 0 {
            format!("{m}m{s}{f}s")
        } else {
            format!("{s}{f}s")
        }
    };
    if neg {
        format!("-{body}")
    } else {
        body
    }
}

/// `HEALTHCHECK %q` of BuildKit's `*HealthConfig{Test, Interval, Timeout, StartPeriod,
/// Retries}`: `&{["CMD-SHELL" "..."] "30s" "5s" "0s" '\x03'}`. Docker 20.10 has no
/// `--start-interval`; when one is set it is printed after the start period.
pub(crate) fn healthcheck(hc: &Healthcheck) -> String {
    let d = |v: Option<i64>| go_quote(&go_duration(v.unwrap_or(0)));
    let mut fields = vec![
        go_quoted_list(hc.test.as_deref().unwrap_or_default()),
        d(hc.interval),
        d(hc.timeout),
        d(hc.start_period),
    ];
    if hc.start_interval.is_some() {
        fields.push(d(hc.start_interval));
    }
    fields.push(go_quote_rune(hc.retries.unwrap_or(0)));
    format!("HEALTHCHECK &{{{}}}", fields.join(" "))
}

/// The exposed-port keys (`8080/tcp`) of one EXPOSE word, as Docker's
/// `nat.ParsePortSpecs` reads it: `[ip:[hostport]:]port[-end][/proto]`, the protocol
/// lower-cased (tcp by default), a range expanded, numbers without leading zeros.
pub(crate) fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let container = spec.rsplit(':').next().unwrap_or(spec);
    let (port, proto) = match container.split_once('/') {
        _ if container.is_empty() || container.starts_with('/') => {
            return Err(format!("no port specified: {spec}<empty>"))
        }
        None => (container, "tcp".to_string()),
        Some((p, "")) => (p, "tcp".to_string()),
        Some((p, proto)) => (p, proto.split('/').next().unwrap_or(proto).to_lowercase()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto} in {spec:?} (use tcp, udp or sctp)"));
    }
    let bad = || format!("invalid containerPort: {port} in {spec:?}");
    let (start, end) = match port.split_once('-') {
        None => {
            let p: u16 = port.parse().map_err(|_| bad())?;
            (p, p)
        }
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a {
                return Err(bad());
            }
            (a, b)
        }
    };
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `EXPOSE %v` of the parsed port set (a Go map: keys sorted, `:{}` values).
pub(crate) fn expose(keys: &BTreeSet<String>) -> String {
    let items: Vec<String> = keys.iter().map(|k| format!("{k}:{{}}")).collect();
    format!("EXPOSE map[{}]", items.join(" "))
}

/// BuildKit's `runCommandString`: a RUN's argv, preceded by `|N k=v ...` when the stage
/// declared ARGs (each with its value in the RUN's environment, empty when it has none).
pub(crate) fn run(args: &[String], build_args: &[(String, String)]) -> String {
    let mut parts = Vec::new();
    if !build_args.is_empty() {
        parts.push(format!("|{}", build_args.len()));
        parts.extend(build_args.iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    format!("RUN {}", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn quoting_is_gos() {
        assert_eq!(go_quote("echo $VERSION"), r#""echo $VERSION""#);
        assert_eq!(go_quote("a\"b\\c\n\t\x01\x7f"), r#""a\"b\\c\n\t\x01\x7f""#);
        assert_eq!(go_quote("héllo ✓"), "\"héllo ✓\"");
        assert_eq!(go_quote("nb\u{a0}sp zw\u{200b}"), r#""nb\u00a0sp zw\u200b""#);
        assert_eq!(go_quote_rune(4), r"'\x04'");
        assert_eq!(go_quote_rune(0), r"'\x00'");
        assert_eq!(go_quote_rune(10), r"'\n'");
        assert_eq!(go_quote_rune(65), "'A'");
        assert_eq!(go_quote_rune(39), r"'\''");
        assert_eq!(go_quote_rune(-1), "'\u{FFFD}'");
    }

    #[test]
    fn lists_as_go_prints_them() {
        assert_eq!(go_quoted_list(&strings(&["/bin/sh", "-c"])), r#"["/bin/sh" "-c"]"#);
        assert_eq!(go_list(&strings(&["/bin/sh", "-ec"])), "[/bin/sh -ec]");
        // `VOLUME /data ["/logs"]` is no JSON array: two words, the quotes removed.
        assert_eq!(go_list(&strings(&["/data", "[/logs]"])), "[/data [/logs]]");
        assert_eq!(go_quoted_list(&[]), "[]");
    }

    #[test]
    fn durations_as_go_prints_them() {
        let s = 1_000_000_000;
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(30 * s), "30s");
        assert_eq!(go_duration(90 * s), "1m30s");
        assert_eq!(go_duration(3600 * s), "1h0m0s");
        assert_eq!(go_duration(3 * s / 2), "1.5s");
        assert_eq!(go_duration(500_000_000), "500ms");
        assert_eq!(go_duration(1_500), "1.5µs");
        assert_eq!(go_duration(999), "999ns");
        assert_eq!(go_duration(-2 * s), "-2s");
        assert_eq!(go_duration(26 * 3600 * s + 61 * s + 5), "26h1m1.000000005s");
    }

    #[test]
    fn healthcheck_text_is_buildkits() {
        let s = 1_000_000_000;
        let hc = Healthcheck {
            test: Some(strings(&["CMD-SHELL", "wget -q -O- http://localhost:8080/ || exit 1"])),
            interval: Some(30 * s),
            timeout: Some(5 * s),
            start_period: Some(2 * s),
            start_interval: None,
            retries: Some(4),
        };
        assert_eq!(
            healthcheck(&hc),
            r#"HEALTHCHECK &{["CMD-SHELL" "wget -q -O- http://localhost:8080/ || exit 1"] "30s" "5s" "2s" '\x04'}"#
        );
        let none = Healthcheck { test: Some(strings(&["NONE"])), ..Healthcheck::default() };
        assert_eq!(healthcheck(&none), r#"HEALTHCHECK &{["NONE"] "0s" "0s" "0s" '\x00'}"#);
        let exec = Healthcheck {
            test: Some(strings(&["CMD", "/bin/check", "--fast"])),
            interval: Some(90 * s),
            ..Healthcheck::default()
        };
        assert_eq!(
            healthcheck(&exec),
            r#"HEALTHCHECK &{["CMD" "/bin/check" "--fast"] "1m30s" "0s" "0s" '\x00'}"#
        );
    }

    #[test]
    fn expose_parses_and_prints_as_docker() {
        let mut keys = BTreeSet::new();
        for w in ["9090/udp", "8080", "8080/tcp", "10000-10002/TCP", "127.0.0.1:80:08081"] {
            keys.extend(port_keys(w).unwrap());
        }
        assert_eq!(
            expose(&keys),
            "EXPOSE map[10000/tcp:{} 10001/tcp:{} 10002/tcp:{} 8080/tcp:{} 8081/tcp:{} 9090/udp:{}]"
        );
        assert_eq!(expose(&BTreeSet::new()), "EXPOSE map[]");
        assert!(port_keys("http").unwrap_err().contains("invalid containerPort: http"));
        assert!(port_keys("80/icmp").unwrap_err().contains("invalid proto: icmp"));
        assert!(port_keys("90-80").is_err());
        assert!(port_keys("").is_err());
    }

    #[test]
    fn run_text_carries_the_stage_args() {
        let args = strings(&["/bin/sh", "-c", "echo hi"]);
        assert_eq!(run(&args, &[]), "RUN /bin/sh -c echo hi");
        let ba = vec![("VERSION".to_string(), "1.2.3".to_string()), ("UNUSED".into(), "".into())];
        assert_eq!(run(&args, &ba), "RUN |2 VERSION=1.2.3 UNUSED= /bin/sh -c echo hi");
    }
}

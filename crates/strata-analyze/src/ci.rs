//! `--ci`: dive's three rules, their thresholds from flags or a `.dive-ci` file, and dive's
//! CI report.

use std::path::Path;

use serde::Serialize;
use strata_format::units::go_format_float_v;

use crate::analysis::Analysis;
use crate::error::{AnalyzeError, Result};

/// dive's defaults (`rules.lowestEfficiency: 0.9`, `highestWastedBytes: disabled`,
/// `highestUserWastedPercent: 0.1`).
pub const DEFAULT_LOWEST_EFFICIENCY: &str = "0.9";
pub const DEFAULT_HIGHEST_WASTED_BYTES: &str = "disabled";
pub const DEFAULT_HIGHEST_USER_WASTED_PERCENT: &str = "0.1";

/// Rule values as dive keeps them: strings, `disabled` to skip a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiRules {
    pub lowest_efficiency: String,
    pub highest_wasted_bytes: String,
    pub highest_user_wasted_percent: String,
}

impl Default for CiRules {
    fn default() -> Self {
        CiRules {
            lowest_efficiency: DEFAULT_LOWEST_EFFICIENCY.into(),
            highest_wasted_bytes: DEFAULT_HIGHEST_WASTED_BYTES.into(),
            highest_user_wasted_percent: DEFAULT_HIGHEST_USER_WASTED_PERCENT.into(),
        }
    }
}

impl CiRules {
    /// Overrides the rules a `.dive-ci` file sets (`rules: {lowestEfficiency: ..., ...}`).
    pub fn apply_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| AnalyzeError::io(path, e))?;
        self.apply_yaml(&text)
            .map_err(|reason| AnalyzeError::CiConfig { path: path.to_path_buf(), reason })
    }

    pub fn apply_yaml(&mut self, text: &str) -> std::result::Result<(), String> {
        use yaml_rust2::{Yaml, YamlLoader};
        let docs =
            YamlLoader::load_from_str(text).map_err(|e| format!("is not valid YAML: {e}"))?;
        let Some(doc) = docs.first() else { return Ok(()) };
        let rules = &doc["rules"];
        if rules.is_badvalue() || rules.is_null() {
            return Ok(());
        }
        if rules.as_hash().is_none() {
            return Err("\"rules\" is not a mapping".into());
        }
        let value = |key: &str| -> std::result::Result<Option<String>, String> {
            match &rules[key] {
                Yaml::BadValue | Yaml::Null => Ok(None),
                Yaml::Real(s) | Yaml::String(s) => Ok(Some(s.trim().to_string())),
                Yaml::Integer(i) => Ok(Some(i.to_string())),
                Yaml::Boolean(b) => Ok(Some(b.to_string())),
                other => Err(format!(
                    "rules.{key} must be a number, a size or \"disabled\", not {other:?}"
                )),
            }
        };
        if let Some(v) = value("lowestEfficiency")? {
            self.lowest_efficiency = v;
        }
        if let Some(v) = value("highestWastedBytes")? {
            self.highest_wasted_bytes = v;
        }
        if let Some(v) = value("highestUserWastedPercent")? {
            self.highest_user_wasted_percent = v;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleStatus {
    Pass,
    Fail,
    Skip,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleResult {
    /// dive's key without `rules.`: `lowestEfficiency`...
    pub rule: &'static str,
    pub status: RuleStatus,
    pub message: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CiOutcome {
    pub pass: bool,
    /// Sorted by rule name, as dive prints them.
    pub results: Vec<RuleResult>,
}

/// Evaluates dive's rules against an analysis.
pub fn evaluate(analysis: &Analysis, rules: &CiRules) -> CiOutcome {
    let mut results = Vec::new();
    let disabled = |v: &str| v == "disabled";
    // highestUserWastedPercent
    let v = &rules.highest_user_wasted_percent;
    results.push(if disabled(v) {
        skip("highestUserWastedPercent")
    } else {
        match parse_go_float(v) {
            Err(e) => fail("highestUserWastedPercent", format!("invalid config value ('{v}'): {e}")),
            // NaN compares false, +Inf fails: Go's float semantics, as in dive.
            Ok(t) if t < analysis.user_wasted_percent => fail(
                "highestUserWastedPercent",
                format!(
                    "too many bytes wasted, relative to the user bytes added (%-user-wasted-bytes={} > threshold={})",
                    go_format_float_v(analysis.user_wasted_percent),
                    go_format_float_v(t)
                ),
            ),
            Ok(_) => pass("highestUserWastedPercent"),
        }
    });
    let v = &rules.highest_wasted_bytes;
    results.push(if disabled(v) {
        skip("highestWastedBytes")
    } else {
        match parse_bytes(v) {
            Err(e) => fail("highestWastedBytes", format!("invalid config value ('{v}'): {e}")),
            Ok(t) if analysis.wasted_bytes > t => fail(
                "highestWastedBytes",
                format!(
                    "too many bytes wasted (wasted-bytes={} > threshold={t})",
                    analysis.wasted_bytes
                ),
            ),
            Ok(_) => pass("highestWastedBytes"),
        }
    });
    let v = &rules.lowest_efficiency;
    results.push(if disabled(v) {
        skip("lowestEfficiency")
    } else {
        match parse_go_float(v) {
            Err(e) => fail("lowestEfficiency", format!("invalid config value ('{v}'): {e}")),
            Ok(t) if t > analysis.efficiency => fail(
                "lowestEfficiency",
                format!(
                    "image efficiency is too low (efficiency={} < threshold={})",
                    go_format_float_v(analysis.efficiency),
                    go_format_float_v(t)
                ),
            ),
            Ok(_) => pass("lowestEfficiency"),
        }
    });
    let pass = results.iter().all(|r| r.status != RuleStatus::Fail);
    CiOutcome { pass, results }
}

fn pass(rule: &'static str) -> RuleResult {
    RuleResult { rule, status: RuleStatus::Pass, message: String::new() }
}
fn fail(rule: &'static str, message: String) -> RuleResult {
    RuleResult { rule, status: RuleStatus::Fail, message }
}
fn skip(rule: &'static str) -> RuleResult {
    RuleResult { rule, status: RuleStatus::Skip, message: "rule disabled".into() }
}

/// Go's `strconv.ParseFloat(s, 64)` for the inputs people write (no hex floats, `_`).
pub fn parse_go_float(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    if t.is_empty() || t != s {
        return Err(format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"));
    }
    t.parse::<f64>().map_err(|_| format!("strconv.ParseFloat: parsing {s:?}: invalid syntax"))
}

/// go-humanize `ParseBytes`: `42`, `42 MB` (SI), `42MiB` (IEC), `1,000 kB`, case-insensitive.
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let digits_end = s
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_digit() || *c == '.' || *c == ','))
        .map_or(s.len(), |(i, _)| i);
    let num = s[..digits_end].replace(',', "");
    let f: f64 =
        num.parse().map_err(|_| format!("strconv.ParseFloat: parsing {num:?}: invalid syntax"))?;
    let unit = s[digits_end..].trim().to_ascii_lowercase();
    let mult: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024f64.powi(2),
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024f64.powi(3),
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024f64.powi(4),
        "p" | "pb" => 1e15,
        "pi" | "pib" => 1024f64.powi(5),
        "e" | "eb" => 1e18,
        "ei" | "eib" => 1024f64.powi(6),
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let v = f * mult;
    if v >= u64::MAX as f64 {
        return Err(format!("too large: {s}"));
    }
    Ok(v as u64)
}

/// go-humanize `Bytes`: `82 B`, `1.2 kB`, `15 MB`.
pub fn humanize_bytes(n: u64) -> String {
    const SIZES: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let e = ((n as f64).ln() / 1000f64.ln()).floor();
    let e = (e as usize).min(SIZES.len() - 1);
    let val = ((n as f64) / 1000f64.powi(e as i32) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", SIZES[e])
    } else {
        format!("{val:.0} {}", SIZES[e])
    }
}

/// dive's CI text: the analysis summary, inefficient files and rule results.
pub fn report(analysis: &Analysis, outcome: &CiOutcome) -> String {
    let mut s = String::new();
    s.push_str(&format!("  efficiency: {:.4} %\n", analysis.efficiency * 100.0));
    s.push_str(&format!(
        "  wastedBytes: {} bytes ({})\n",
        analysis.wasted_bytes,
        humanize_bytes(analysis.wasted_bytes)
    ));
    s.push_str(&format!("  userWastedPercent: {} %\n", go_percent(analysis.user_wasted_percent)));
    s.push_str("Inefficient Files:\n");
    s.push_str(&format!("{:>5}  {:>12}  {}\n", "Count", "Wasted Space", "File Path"));
    if analysis.inefficiencies.is_empty() {
        s.push_str("None\n");
    }
    for f in &analysis.inefficiencies {
        s.push_str(&format!(
            "{:>5}  {:>12}  {}\n",
            f.count,
            humanize_bytes(f.wasted_bytes),
            f.path
        ));
    }
    s.push_str("Results:\n");
    let (mut p, mut f, mut k) = (0, 0, 0);
    for r in &outcome.results {
        let label = match r.status {
            RuleStatus::Pass => {
                p += 1;
                "PASS"
            }
            RuleStatus::Fail => {
                f += 1;
                "FAIL"
            }
            RuleStatus::Skip => {
                k += 1;
                "SKIP"
            }
        };
        if r.message.is_empty() {
            s.push_str(&format!("  {label}: {}\n", r.rule));
        } else {
            s.push_str(&format!("  {label}: {}: {}\n", r.rule, r.message));
        }
    }
    s.push_str(&format!(
        "Result:{} [Total:{}] [Passed:{p}] [Failed:{f}] [Warn:0] [Skipped:{k}]\n",
        if outcome.pass { "PASS" } else { "FAIL" },
        outcome.results.len()
    ));
    s
}

/// Go's `%2.4f` of `v*100`, including `NaN` and `+Inf`.
fn go_percent(v: f64) -> String {
    let v = v * 100.0;
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_like_go_humanize() {
        assert_eq!(parse_bytes("42"), Ok(42));
        assert_eq!(parse_bytes("20MB"), Ok(20_000_000));
        assert_eq!(parse_bytes("20 mb"), Ok(20_000_000));
        assert_eq!(parse_bytes("1,000 kB"), Ok(1_000_000));
        assert_eq!(parse_bytes("1.5KiB"), Ok(1536));
        assert_eq!(parse_bytes("2M"), Ok(2_000_000));
        assert!(parse_bytes("12 parsecs").is_err());
        assert!(parse_bytes("MB").is_err());
    }

    #[test]
    fn humanizes_like_go_humanize() {
        assert_eq!(humanize_bytes(0), "0 B");
        assert_eq!(humanize_bytes(82), "82 B");
        assert_eq!(humanize_bytes(1234), "1.2 kB");
        assert_eq!(humanize_bytes(15_000_000), "15 MB");
        assert_eq!(humanize_bytes(5_253_393), "5.3 MB");
    }

    #[test]
    fn reads_dive_ci_yaml() {
        let mut r = CiRules::default();
        r.apply_yaml("rules:\n  lowestEfficiency: 0.95\n  highestWastedBytes: 20MB\n  highestUserWastedPercent: disabled\n")
            .unwrap();
        assert_eq!(r.lowest_efficiency, "0.95");
        assert_eq!(r.highest_wasted_bytes, "20MB");
        assert_eq!(r.highest_user_wasted_percent, "disabled");
        let mut r = CiRules::default();
        r.apply_yaml("rules:\n  highestWastedBytes: 1000\n").unwrap();
        assert_eq!(r.highest_wasted_bytes, "1000");
        assert_eq!(r.lowest_efficiency, "0.9");
        assert!(CiRules::default().apply_yaml("rules: [1, 2]").is_err());
        assert!(CiRules::default().apply_yaml("rules: {a: [").is_err());
    }
}

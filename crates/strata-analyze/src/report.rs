//! The text report and the JSON document.

use serde_json::{json, Value};
use strata_format::{ellipsis, human_size_with_precision, TabWriter};

use crate::analysis::Analysis;
use crate::ci::CiOutcome;

/// Sizes as Docker prints them (`4.26MB`).
pub fn size(n: u64) -> String {
    human_size_with_precision(n as f64, 3)
}

/// Percent with 4 decimals, or `n/a` when undefined (no user layers).
fn percent(v: f64) -> String {
    if v.is_finite() {
        format!("{:.4} %", v * 100.0)
    } else {
        "n/a (no bytes in the layers above the first)".to_string()
    }
}

/// The human report: layers with their changes, totals, efficiency and the largest wasted
/// files with the layers they sit in.
pub fn text(analysis: &Analysis, top: usize, no_trunc: bool) -> String {
    let mut out = String::new();
    out.push_str(&format!("Image: {}\n", analysis.image));
    if let Some(id) = &analysis.id {
        out.push_str(&format!("ID: {id}\n"));
    }
    if analysis.other_images > 0 {
        out.push_str(&format!(
            "Note: the source holds {} more image(s); the first one was analysed\n",
            analysis.other_images
        ));
    }
    out.push('\n');
    let mut tw = TabWriter::docker();
    tw.write_str("LAYER\tDIGEST\tSIZE\tADDED\tMODIFIED\tREMOVED\tCOMMAND\n");
    for l in &analysis.layers {
        let digest = l.digest.strip_prefix("sha256:").unwrap_or(&l.digest);
        let digest = if no_trunc { digest.to_string() } else { digest.chars().take(12).collect() };
        let command = l.command.replace(['\t', '\n'], " ");
        let command = if no_trunc { command } else { ellipsis(&command, 60) };
        tw.write_str(&format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            l.index,
            digest,
            size(l.size),
            l.added,
            l.modified,
            l.removed,
            command
        ));
    }
    out.push_str(&tw.finish());
    out.push('\n');
    out.push_str(&format!("Total image size:       {}\n", size(analysis.size_bytes)));
    out.push_str(&format!("User layers size:       {}\n", size(analysis.user_size_bytes)));
    out.push_str(&format!(
        "Potential wasted space: {} ({} bytes)\n",
        size(analysis.wasted_bytes),
        analysis.wasted_bytes
    ));
    out.push_str(&format!("Image efficiency score: {}\n", percent(analysis.efficiency)));
    out.push_str(&format!("User wasted percent:    {}\n", percent(analysis.user_wasted_percent)));
    out.push('\n');
    if analysis.inefficiencies.is_empty() {
        out.push_str("No wasted files: no path is stored in more than one layer.\n");
        return out;
    }
    let shown = analysis.inefficiencies.len().min(top);
    out.push_str(&format!(
        "Largest wasted files ({shown} of {}):\n",
        analysis.inefficiencies.len()
    ));
    let mut tw = TabWriter::docker();
    tw.write_str("COUNT\tWASTED\tLAYERS\tPATH\n");
    for f in analysis.inefficiencies.iter().take(top) {
        let layers: Vec<String> = f.layers.iter().map(usize::to_string).collect();
        tw.write_str(&format!(
            "{}\t{}\t{}\t{}\n",
            f.count,
            size(f.wasted_bytes),
            layers.join(","),
            f.path
        ));
    }
    out.push_str(&tw.finish());
    out
}

fn finite(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

/// The JSON document: dive's `--json` shape (`layer`, `image`) with Strata's extra fields.
pub fn json(analysis: &Analysis, ci: Option<&CiOutcome>) -> Value {
    let layers: Vec<Value> = analysis
        .layers
        .iter()
        .map(|l| {
            json!({
                "index": l.index,
                "id": l.digest,
                "digestId": l.diff_id,
                "sizeBytes": l.size,
                "blobSizeBytes": l.blob_size,
                "command": l.command,
                "entries": l.entries,
                "added": l.added,
                "modified": l.modified,
                "removed": l.removed,
            })
        })
        .collect();
    let files: Vec<Value> = analysis
        .inefficiencies
        .iter()
        .map(|f| json!({"count": f.count, "sizeBytes": f.wasted_bytes, "file": f.path, "layers": f.layers}))
        .collect();
    let mut doc = json!({
        "layer": layers,
        "image": {
            "name": analysis.image,
            "id": analysis.id,
            "sizeBytes": analysis.size_bytes,
            "userSizeBytes": analysis.user_size_bytes,
            "inefficientBytes": analysis.wasted_bytes,
            "efficiencyScore": finite(analysis.efficiency),
            "userWastedPercent": finite(analysis.user_wasted_percent),
            "fileReference": files,
        },
    });
    if let Some(ci) = ci {
        doc["ci"] = serde_json::to_value(ci).unwrap_or(Value::Null);
    }
    doc
}

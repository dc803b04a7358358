//! Docker-compatible output formatting for the `strata` CLI.
//!
//! Everything needed to print what the Docker CLI prints:
//!
//! * [`Formatter`]: `--format` values (`table ...`, `json`, Go templates) with Docker's
//!   template functions, rendered with `gtmpl`;
//! * [`TabWriter`]: Go's `text/tabwriter` layout, with Docker's settings in
//!   [`TabWriter::docker`];
//! * [`units`]: go-units sizes and durations, Go timestamp layouts;
//! * [`strings`]: `TruncateID`, `Ellipsis`.
//!
//! Nothing here prints to the terminal; every function returns a `String`.

pub mod strings;
pub mod tabwriter;
pub mod template;
pub mod units;

pub use strings::{ellipsis, history_created_by, truncate_id};
pub use tabwriter::{docker_table, TabFlags, TabWriter};
pub use template::{
    go_print, json_to_value, render_template, resolve_format, FormatKind, Formatter,
};
pub use units::{
    bytes_size, created_since, from_human_size, go_format_g, go_time_string, go_time_string_unix,
    human_duration, human_size, human_size_with_precision, ram_in_bytes, rfc3339, rfc3339_nano,
    rfc3339_unix,
};

/// Errors from parsing formats, rendering templates and parsing sizes.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The `--format` template does not parse.
    #[error("template parsing error: {0}")]
    Parse(String),
    /// The template failed while rendering an item (unknown function, bad argument, ...).
    #[error("template parsing error: {0}")]
    Execute(String),
    /// A size string such as `"12 parsecs"` that go-units would reject.
    #[error("invalid size: '{0}'")]
    InvalidSize(String),
    /// A Unix timestamp outside the range chrono can represent.
    #[error("invalid timestamp: {0}")]
    InvalidTimestamp(i64),
}

//! Strata's Dockerfile frontend: a parser with source spans that reads what
//! BuildKit reads, the shell-word expander, `.dockerignore` matching, the
//! typed instruction model, variable scoping, the stage graph, build checks
//! and the `--call=outline|targets|check` reports.
//!
//! ```
//! use std::collections::BTreeMap;
//! use strata_dockerfile::{call_outline, parse_dockerfile, stages_needed, InstructionKind};
//!
//! let src = "ARG GO_VERSION=1.22\n\
//!            FROM golang:${GO_VERSION} AS build\n\
//!            RUN go build -o /app .\n\
//!            FROM scratch\n\
//!            COPY --from=build /app /app\n";
//! let df = parse_dockerfile("Dockerfile", src).map_err(|e| e.render_plain()).unwrap();
//! assert_eq!(df.stages[0].name.as_deref(), Some("build"));
//! assert!(matches!(df.stages[1].instructions[0].kind, InstructionKind::Copy(_)));
//! // The default target (the last stage) needs the build stage first.
//! assert_eq!(stages_needed(&df, None).unwrap(), vec![0, 1]);
//! let text = call_outline(&df, &BTreeMap::new(), None).unwrap();
//! assert!(text.contains("GO_VERSION   1.22"));
//!
//! // Mistakes come back as values with a place and a suggestion.
//! let err = parse_dockerfile("Dockerfile", "FROM alpine\nCOPPY . /\n").unwrap_err();
//! assert_eq!(err.location(), "Dockerfile:2:1");
//! assert_eq!(err.help.as_deref(), Some("did you mean COPY?"));
//! ```

pub mod calls;
pub mod checks;
pub mod diagnostics;
pub mod directives;
pub mod dockerignore;
pub mod graph;
pub mod heredoc;
pub mod instructions;
pub mod model;
pub mod parser;
pub mod scope;
pub mod shell;

pub use calls::{
    call_check, call_outline, call_targets, check_config, outline, targets, CheckReport, Outline,
    TargetInfo,
};
pub use checks::{run_checks, CheckConfig};
pub use diagnostics::{Diag, Position, Severity, SourceFile, Span};
pub use directives::{detect_directive, detect_syntax, DetectedDirective, Directive};
pub use dockerignore::{find_ignore_file, read_dockerignore, IgnoreMatcher, WalkDecision};
pub use graph::{stages_needed, stages_needed_in, target_index};
pub use heredoc::Heredoc;
pub use instructions::{
    ArgDecl, CopySpec, HealthOptions, Instruction, InstructionKind, KeyValue, Mount, MountType,
    ShellOrExec,
};
pub use model::{parse_dockerfile, read_dockerfile, Dockerfile, GlobalArg, Stage};
pub use parser::{parse, Ast, Node};
pub use scope::{analyze, BaseRef, BuildOptions, FromRef, Platform, Scope};
pub use shell::{Env, Expansion, NoEnv, ShellError, ShellLex};

mod fuzz_entry;
#[doc(hidden)]
pub use fuzz_entry::{fuzz_entry_dockerfile, fuzz_entry_dockerignore, fuzz_entry_expand};

//! The Dockerfile as the build engine sees it: global ARGs, then stages,
//! each a base plus typed instructions.

use crate::diagnostics::{closest, Diag, SourceFile, Span};
use crate::directives::Directive;
use crate::instructions::{
    instruction_from_node, unknown_instruction, ArgDecl, Ctx, Flags, Instruction, InstructionKind,
};
use crate::parser::{parse, Ast, Node};

/// An ARG declared before the first FROM. Usable only in FROM lines unless
/// a stage declares it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalArg {
    pub decl: ArgDecl,
    /// Description from a `# NAME description` comment right above.
    pub description: Option<String>,
    pub span: Span,
}

/// One build stage: `FROM base [AS name]` and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stage {
    /// Lowercased stage name, if it has one.
    pub name: Option<String>,
    /// The name as written (for casing checks).
    pub name_as_written: Option<String>,
    /// Position among the stages, from 0.
    pub index: usize,
    /// The FROM argument as written (may contain `$VAR`).
    pub base: String,
    /// `--platform` as written.
    pub platform: Option<String>,
    pub instructions: Vec<Instruction>,
    /// Description from a `# name description` comment above FROM.
    pub description: Option<String>,
    /// The FROM line.
    pub span: Span,
    /// The FROM keyword as written.
    pub from_keyword: String,
    /// The `AS` keyword as written, if present.
    pub as_keyword: Option<String>,
}

impl Stage {
    /// `name` if the stage has one, else its index as a string (how BuildKit
    /// names unnamed stages in `--from`).
    pub fn display_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.index.to_string())
    }
}

/// A whole Dockerfile.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub source: SourceFile,
    pub directives: Vec<Directive>,
    pub escape: char,
    pub global_args: Vec<GlobalArg>,
    pub stages: Vec<Stage>,
    /// Warnings found while parsing (empty continuation lines).
    pub parse_warnings: Vec<Diag>,
}

/// Read and parse the Dockerfile at `path` (the only file this crate
/// reads). Bytes that are not UTF-8 are replaced rather than rejected, as
/// BuildKit passes them through untouched.
pub fn read_dockerfile(path: &std::path::Path) -> Result<Dockerfile, Diag> {
    let bytes = std::fs::read(path).map_err(|e| {
        Diag::error("dockerfile::read", format!("cannot read Dockerfile {}: {e}", path.display()))
            .with_help(
                "check the path given with -f/--file, or that the context holds a Dockerfile",
            )
    })?;
    parse_dockerfile(&path.display().to_string(), &String::from_utf8_lossy(&bytes))
}

/// Parse and type a Dockerfile in one go. `name` is used in diagnostics.
pub fn parse_dockerfile(name: &str, src: &str) -> Result<Dockerfile, Diag> {
    Dockerfile::from_ast(parse(name, src)?)
}

/// Description from the comments above an instruction, as BuildKit's
/// `getDocComment`: the rest of the first comment line that starts with
/// `<name> `.
pub(crate) fn description(node: &Node, name: &str) -> Option<String> {
    if name.is_empty() {
        return None;
    }
    let prefix = format!("{name} ");
    node.comments.iter().find_map(|c| c.strip_prefix(&prefix)).map(str::to_string)
}

/// Stage names: lowercase letter first, then letters, digits, `-`, `_`, `.`.
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

impl Dockerfile {
    pub fn from_ast(ast: Ast) -> Result<Dockerfile, Diag> {
        let src = ast.source.clone();
        let mut global_args = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        for node in &ast.nodes {
            let ctx = Ctx { node, src: &src };
            if node.keyword == "from" {
                stages.push(stage_from_node(&ctx, stages.len())?);
                continue;
            }
            if !crate::parser::KNOWN_INSTRUCTIONS.contains(&node.keyword.to_uppercase().as_str()) {
                return Err(unknown_instruction(&ctx));
            }
            let instr = instruction_from_node(node, &src)?;
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(instr),
                None => match instr.kind {
                    InstructionKind::Arg(decls) => {
                        for decl in decls {
                            let description = description(node, &decl.name);
                            global_args.push(GlobalArg { decl, description, span: node.span });
                        }
                    }
                    _ => return Err(ctx
                        .err(format!(
                            "no build stage in current context: {} must come after FROM",
                            instr.name()
                        ))
                        .with_label("before the first FROM")
                        .with_help(
                            "only ARG may appear before the first FROM; add a FROM line above this",
                        )),
                },
            }
        }
        if stages.is_empty() {
            let end = src.text.len();
            return Err(Diag::error(
                "dockerfile::no-stage",
                "the Dockerfile has no FROM instruction",
            )
            .at(Span::from_offsets(&src.text, end, end))
            .in_file(&src)
            .with_help("add a FROM line, e.g. FROM debian:bookworm"));
        }
        Ok(Dockerfile {
            source: src,
            directives: ast.directives,
            escape: ast.escape,
            global_args,
            stages,
            parse_warnings: ast.warnings,
        })
    }

    /// The stage called `name` (case-insensitive) or with index `name`.
    pub fn find_stage(&self, name: &str) -> Option<usize> {
        let lower = name.to_lowercase();
        if let Some(s) = self.stages.iter().find(|s| s.name.as_deref() == Some(lower.as_str())) {
            return Some(s.index);
        }
        lower.parse::<usize>().ok().filter(|i| *i < self.stages.len())
    }

    /// A "did you mean" for a stage name that does not exist.
    pub fn suggest_stage(&self, name: &str) -> Option<String> {
        closest(name, self.stages.iter().filter_map(|s| s.name.as_deref())).map(str::to_string)
    }
}

fn stage_from_node(ctx: &Ctx<'_>, index: usize) -> Result<Stage, Diag> {
    let node = ctx.node;
    let flags = Flags::parse(ctx, &["platform"])?;
    let platform = flags.string("platform")?;
    let (name, name_as_written, as_keyword) = match node.args.len() {
        1 => (None, None, None),
        3 if node.args[1].eq_ignore_ascii_case("as") => {
            let written = node.args[2].clone();
            let lower = written.to_lowercase();
            if !valid_stage_name(&lower) {
                return Err(ctx
                    .err_at(&written, format!("invalid name for build stage: {written:?}, name can't start with a number or contain symbols"))
                    .with_label("invalid stage name")
                    .with_help("use lowercase letters, digits, '-', '_' and '.', starting with a letter"));
            }
            (Some(lower), Some(written), Some(node.args[1].clone()))
        }
        3 => {
            let mut e = ctx.err_at(
                &node.args[1],
                format!("FROM expects `AS <name>` after the image, found {:?}", node.args[1]),
            );
            if closest(&node.args[1], ["AS"]).is_some() {
                e = e.with_help("did you mean AS?");
            }
            return Err(e);
        }
        0 => {
            return Err(ctx
                .err("FROM requires either one or three arguments")
                .with_label("missing base image")
                .with_help("write FROM <image> [AS <name>]"))
        }
        _ => {
            return Err(ctx
                .err("FROM requires either one or three arguments")
                .with_help("write FROM <image> [AS <name>]"))
        }
    };
    let description = name.as_deref().and_then(|n| description(node, n));
    Ok(Stage {
        name,
        name_as_written,
        index,
        base: node.args[0].clone(),
        platform,
        instructions: Vec::new(),
        description,
        span: node.span,
        from_keyword: node.keyword_as_written.clone(),
        as_keyword,
    })
}

//! `copy`: a file with the given `content` or the content of a local `src`
//! file, written only when its SHA-256 differs from the host's. A local
//! file is read once per run (see [`crate::plan::module::LocalFiles`]).

use std::sync::Arc;

use super::file::FileContent;
use super::{check_path, local_file, ArgError, Args, ParseCtx, Spec, ATTRS};
use crate::plan::module::{Action, Module};

/// The `copy` module.
pub struct CopyModule;
pub static COPY: CopyModule = CopyModule;
static SPEC: Spec =
    Spec { name: "copy", args: &["dest", "content", "src", ATTRS[0], ATTRS[1], ATTRS[2]], late: &["content"], free_form: None };

impl Module for CopyModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(parse(a, ctx)?))
    }
}

pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<FileContent, ArgError> {
    let dest = a.str("dest")?;
    check_path("dest", &dest)?;
    let mut local_src = None;
    let mut sha256 = None;
    let content = match (a.opt_str("content")?, a.opt_str("src")?) {
        (Some(c), None) => Arc::new(c.into_bytes()),
        (None, Some(src)) => {
            let path = local_file(ctx.base_dir, "files", &src).ok_or_else(|| {
                ArgError::field("src", format!("local file `{src}` not found (looked in files/ and beside the playbook)"))
            })?;
            // Before connecting only its presence matters; the content is
            // read once, for all hosts, before planning.
            let content = if ctx.trial {
                Arc::new(Vec::new())
            } else {
                let f = ctx.files.file(&path).map_err(|e| ArgError::field("src", format!("{}: {e}", path.display())))?;
                sha256 = Some(f.sha256.to_string());
                f.content
            };
            local_src = Some(path);
            content
        }
        (Some(_), Some(_)) => return Err(ArgError::general("give either `content` or `src`, not both")),
        (None, None) => return Err(ArgError::general("one of `content` or `src` is required")),
    };
    let mut fc = match sha256 {
        Some(h) => FileContent::hashed(dest, content, h, a.attrs()?),
        None => FileContent::new(dest, content, a.attrs()?),
    };
    fc.local_src = local_src;
    Ok(fc)
}

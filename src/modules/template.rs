//! `template`: a file rendered locally from a Jinja2 template in the
//! playbook's `templates/` folder, with the host's variables and facts;
//! written only when its SHA-256 differs from the host's.

use std::sync::Arc;

use super::file::FileContent;
use super::{check_path, ArgError, Args, ParseCtx, Spec, ATTRS};
use crate::plan::module::{Action, Module};

/// The `template` module.
pub struct TemplateModule;
pub static TEMPLATE: TemplateModule = TemplateModule;
static SPEC: Spec = Spec { name: "template", args: &["src", "dest", ATTRS[0], ATTRS[1], ATTRS[2]], late: &[], free_form: None };

impl Module for TemplateModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(parse(a, ctx)?))
    }
}

pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<FileContent, ArgError> {
    let src = a.str("src")?;
    let dest = a.str("dest")?;
    check_path("dest", &dest)?;
    let text = ctx.templates.render_file(&src, ctx.vars).map_err(|e| ArgError::field("src", format!("template `{src}`: {e}")))?;
    let mut fc = FileContent::new(dest, Arc::new(text.into_bytes()), a.attrs()?);
    fc.template = Some(src);
    Ok(fc)
}

//! `template`: a file rendered locally from a Jinja2 template in the
//! playbook's `templates/` folder, with the host's variables and facts;
//! written only when its SHA-256 differs from the host's.

use super::file::FileContent;
use super::{check_path, ArgError, Args, ParseCtx};

pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<FileContent, ArgError> {
    let src = a.str("src")?;
    let dest = a.str("dest")?;
    check_path("dest", &dest)?;
    let text = ctx
        .templates
        .render_file(&src, ctx.vars)
        .map_err(|e| ArgError::field("src", format!("template `{src}`: {e}")))?;
    let mut fc = FileContent::new(dest, text.into_bytes(), a.attrs()?);
    fc.template = Some(src);
    Ok(fc)
}

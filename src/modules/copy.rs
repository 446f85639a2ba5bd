//! `copy`: a file with the given `content` or the content of a local `src`
//! file, written only when its SHA-256 differs from the host's.

use super::file::FileContent;
use super::{check_path, local_file, ArgError, Args, ParseCtx};

pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<FileContent, ArgError> {
    let dest = a.str("dest")?;
    check_path("dest", &dest)?;
    let content = match (a.opt_str("content")?, a.opt_str("src")?) {
        (Some(c), None) => c.into_bytes(),
        (None, Some(src)) => {
            let path = local_file(ctx.base_dir, "files", &src)
                .ok_or_else(|| ArgError::field("src", format!("local file `{src}` not found (looked in files/ and beside the playbook)")))?;
            std::fs::read(&path).map_err(|e| ArgError::field("src", format!("{}: {e}", path.display())))?
        }
        (Some(_), Some(_)) => return Err(ArgError::general("give either `content` or `src`, not both")),
        (None, None) => return Err(ArgError::general("one of `content` or `src` is required")),
    };
    Ok(FileContent::new(dest, content, a.attrs()?))
}

//! `assert`: conditions that must hold, checked while planning, so a host
//! that does not fit fails before anything is changed on it. `that` is a
//! list of Jinja expressions over variables and facts; `fail_msg` says
//! what is wrong. Before connecting, expressions are only checked for
//! syntax and undefined variables (facts are not known yet).

use super::{ArgError, Args, ParseCtx};
use crate::changes::Change;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assert {
    /// The message if a condition is false.
    pub failed: Option<String>,
}

impl Assert {
    pub fn parse(a: &Args, ctx: &ParseCtx) -> Result<Assert, ArgError> {
        let that = a.list("that")?;
        if that.is_empty() {
            return Err(ArgError::field("that", "is required: a list of conditions"));
        }
        let msg = a.opt_str("fail_msg")?.or(a.opt_str("msg")?);
        for expr in &that {
            let ok = ctx.templates.eval_bool(expr, ctx.vars).map_err(|e| ArgError::field("that", format!("`{expr}`: {e}")))?;
            if !ok && !ctx.trial {
                return Ok(Assert { failed: Some(msg.unwrap_or_else(|| format!("assertion failed: {expr}"))) });
            }
        }
        Ok(Assert { failed: None })
    }

    pub fn plan(&self) -> Result<Vec<Change>, String> {
        match &self.failed {
            Some(m) => Err(m.clone()),
            None => Ok(vec![]),
        }
    }
}

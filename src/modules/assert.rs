//! `assert`: conditions that must hold, checked while planning, so a host
//! that does not fit fails before anything is changed on it. `that` is a
//! list of Jinja expressions over variables and facts; `fail_msg` says
//! what is wrong. Before connecting, expressions are only checked for
//! syntax and undefined variables (facts are not known yet).

use std::collections::BTreeSet;

use super::{ArgError, Args, ParseCtx, Spec};
use crate::plan::changes::Change;
use crate::plan::facts::{FactRequest, Facts};
use crate::plan::module::{Action, Module};

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
/// The `assert` module.
pub struct AssertModule;
pub static ASSERT: AssertModule = AssertModule;
static SPEC: Spec = Spec { name: "assert", args: &["that", "fail_msg", "msg"], late: &["fail_msg", "msg"], free_form: None };

impl Module for AssertModule {
    fn spec(&self) -> &'static Spec {
        &SPEC
    }
    fn parse(&self, a: &Args, ctx: &ParseCtx) -> Result<Box<dyn Action>, ArgError> {
        Ok(Box::new(Assert::parse(a, ctx)?))
    }
}

impl Action for Assert {
    fn probes(&self, _diff: bool, _out: &mut BTreeSet<FactRequest>) {}
    fn plan(&self, _facts: &Facts) -> Result<Vec<Change>, String> {
        Assert::plan(self)
    }
}

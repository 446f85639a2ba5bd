//! Variables that refer to variables: rendered against their own set.

use serde_json::Value as Json;

use crate::template::{Scope, Templates, Vars};

/// Render templated variables against the whole set, a few passes deep so
/// that variables may refer to variables. On error: (variable, message).
pub fn resolve_vars(mut vars: Vars, base: &Scope, templates: &Templates) -> Result<Vars, (String, String)> {
    if !vars.values().any(contains_template) {
        return Ok(vars);
    }
    for _ in 0..5 {
        let snapshot = vars.clone();
        let ctx = base.with(&snapshot);
        let mut changed = false;
        let keys: Vec<String> = vars.keys().cloned().collect();
        for k in keys {
            let v = &vars[&k];
            if !contains_template(v) {
                continue;
            }
            let nv = templates.render_value(v, &ctx).map_err(|e| (k.clone(), e))?;
            if &nv != v {
                vars.insert(k, nv);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    Ok(vars)
}

fn contains_template(v: &Json) -> bool {
    match v {
        Json::String(s) => Templates::is_template(s),
        Json::Array(a) => a.iter().any(contains_template),
        Json::Object(m) => m.values().any(contains_template),
        _ => false,
    }
}

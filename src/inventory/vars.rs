//! Variables that refer to variables: rendered against their own set.

use std::sync::Arc;

use serde_json::Value as Json;

use crate::template::{Scope, Shared, Templates, Vars};

/// Render templated variables against the whole set, a few passes deep so
/// that variables may refer to variables. On error: (variable, message).
///
/// Each pass renders every templated variable against the set as the pass
/// found it (shared, not copied: a template converts only the variables it
/// looks up). It stops when a pass changed nothing, or when nothing it
/// changed still holds template syntax (the variables left with templates
/// rendered to themselves, and their next render would too).
pub fn resolve_vars(vars: Vars, base: &Scope, templates: &Templates) -> Result<Vars, (String, String)> {
    if !vars.values().any(contains_template) {
        return Ok(vars);
    }
    let mut vars = Arc::new(vars);
    for _ in 0..5 {
        let mut changes = Vec::new();
        {
            let layer = Shared::lazy(vars.clone());
            let ctx = base.with_shared(&layer);
            for (k, v) in vars.iter() {
                if !contains_template(v) {
                    continue;
                }
                let nv = templates.render_value(v, &ctx).map_err(|e| (k.clone(), e))?;
                if &nv != v {
                    changes.push((k.clone(), nv));
                }
            }
        }
        let again = changes.iter().any(|(_, v)| contains_template(v));
        // The pass's layer is gone: the set has one owner again, no copy.
        let set = Arc::make_mut(&mut vars);
        let changed = !changes.is_empty();
        for (k, v) in changes {
            set.insert(k, v);
        }
        if !changed || !again {
            break;
        }
    }
    Ok(Arc::try_unwrap(vars).unwrap_or_else(|shared| (*shared).clone()))
}

fn contains_template(v: &Json) -> bool {
    match v {
        Json::String(s) => Templates::is_template(s),
        Json::Array(a) => a.iter().any(contains_template),
        Json::Object(m) => m.values().any(contains_template),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resolve(v: Json) -> Result<Vars, (String, String)> {
        let Json::Object(vars) = v else { panic!("an object") };
        resolve_vars(vars, &Scope::default(), &Templates::new(vec![]))
    }

    #[test]
    fn variables_refer_to_variables_a_few_levels_deep() {
        let r = resolve(json!({"a": "{{ b }}", "b": "x-{{ c }}", "c": "{{ d }}", "d": 4, "l": ["{{ d }}", "{{ a }}"]})).unwrap();
        assert_eq!(Json::Object(r), json!({"a": "x-4", "b": "x-4", "c": 4, "d": 4, "l": [4, "x-4"]}));
    }

    #[test]
    fn an_undefined_reference_names_the_variable() {
        let (k, msg) = resolve(json!({"a": 1, "b": "{{ nope }}"})).unwrap_err();
        assert_eq!(k, "b");
        assert!(msg.contains("undefined"), "{msg}");
    }
}

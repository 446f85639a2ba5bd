//! Jinja2 templating (minijinja) with Ansible's habits.
//!
//! One [`Templates`] environment serves a whole run: template files are
//! looked up in the playbook's `templates/` folder (then the built-in ones),
//! undefined variables are errors (`UndefinedBehavior::Strict`), and a few
//! helpers Ansible users reach for exist: `lookup('env', 'NAME')`, the
//! `bool` and `mandatory` filters. A string that is exactly one `{{ expr }}`
//! evaluates to the expression's own type, as in Ansible, so a list variable
//! stays a list.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::value::{Serde, Value};
use minijinja::{Environment, Error, ErrorKind, Expression, UndefinedBehavior};
use serde_json::{Map, Value as Json};

/// Variables: names to JSON values (YAML converted).
pub type Vars = Map<String, Json>;

/// Variables in layers, later layers winning, seen by templates as one
/// mapping. Layers are shared, not copied: every task of a host sees the
/// inventory's `groups`, its play's variables, its task variables and the
/// host's facts through layers converted for templates once ([`Shared`]);
/// a layer added with [`Scope::with`] is converted when it is added, once
/// for all the renders of that scope, and a template looks up just the
/// names it uses.
#[derive(Clone, Default)]
pub struct Scope<'a> {
    layers: Vec<Layer<'a>>,
}

#[derive(Clone)]
enum Layer<'a> {
    /// Variables converted for templates when the layer was added.
    Own(Value),
    Jinja(&'a Shared),
}

/// Variables made ready for templates once, to be shared by many renders
/// (the inventory's `groups`, a play's variables for a host, its facts).
#[derive(Debug, Clone, Default)]
pub struct Shared {
    value: Value,
}

impl Shared {
    /// `vars` converted for templates now, whole: for a layer every host
    /// shares (the inventory's `groups`).
    pub fn new(vars: &Vars) -> Shared {
        Shared { value: Value::from(Serde(vars)) }
    }

    /// `vars` as they are, each variable converted only when a template
    /// looks it up: a host's play variables and facts are many, and a
    /// template uses a few of them.
    pub fn lazy(vars: Arc<Vars>) -> Shared {
        Shared { value: Value::from_object(LazyVars(vars)) }
    }
}

/// Variables seen by templates as a mapping, converted on lookup.
#[derive(Debug)]
struct LazyVars(Arc<Vars>);

impl minijinja::value::Object for LazyVars {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0.get(key.as_str()?).map(|v| Value::from(Serde(v)))
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        self.0.get(key).map(|v| Value::from(Serde(v)))
    }

    fn enumerate(self: &Arc<Self>) -> minijinja::value::Enumerator {
        use minijinja::value::ObjectExt;
        self.mapped_enumerator(|this| Box::new(this.0.keys().map(|k| Value::from(k.as_str()))))
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

impl<'a> Scope<'a> {
    #[cfg(test)]
    pub fn new(layers: Vec<&'a Vars>) -> Scope<'a> {
        Scope { layers: layers.into_iter().map(|v| Layer::Own(Value::from(Serde(v)))).collect() }
    }

    /// A scope with `shared` at the bottom.
    pub fn on(shared: &'a Shared) -> Scope<'a> {
        Scope { layers: vec![Layer::Jinja(shared)] }
    }

    /// This scope with `layer` on top (converted for templates now).
    pub fn with(&self, layer: &'a Vars) -> Scope<'a> {
        let mut layers = self.layers.clone();
        layers.push(Layer::Own(Value::from(Serde(layer))));
        Scope { layers }
    }

    /// This scope with an already converted `layer` on top.
    pub fn with_shared(&self, layer: &'a Shared) -> Scope<'a> {
        let mut layers = self.layers.clone();
        layers.push(Layer::Jinja(layer));
        Scope { layers }
    }

    /// The value of `name`, from the topmost layer that has it.
    #[cfg(test)]
    pub fn get(&self, name: &str) -> Option<Json> {
        self.layers.iter().rev().find_map(|l| {
            let v = match l {
                Layer::Own(v) => v,
                Layer::Jinja(s) => &s.value,
            };
            v.get_attr(name).ok().filter(|x| !x.is_undefined()).and_then(|x| serde_json::to_value(x).ok())
        })
    }
}

/// What a template can be rendered against.
pub trait Context {
    fn context(&self) -> Value;
}

impl Context for Scope<'_> {
    fn context(&self) -> Value {
        minijinja::value::merge_maps(self.layers.iter().map(|l| match l {
            Layer::Own(v) => v.clone(),
            Layer::Jinja(s) => s.value.clone(),
        }))
    }
}

impl Context for Json {
    fn context(&self) -> Value {
        Value::from(Serde(self))
    }
}

/// Templates built into the binary, used when the playbook's folder has no
/// file of that name.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    ("config.toml.j2", include_str!("../templates/config.toml.j2")),
    ("daemon.json.j2", include_str!("../templates/daemon.json.j2")),
    ("gitlab-runner.service.j2", include_str!("../templates/gitlab-runner.service.j2")),
];

/// Compiled expressions by source, borrowing the environment they were
/// compiled in.
type Expressions<'env> = Mutex<HashMap<String, Arc<Expression<'env, 'static>>>>;

self_cell::self_cell!(
    /// The environment and the expressions compiled in it.
    struct Compiled {
        owner: Environment<'static>,
        #[not_covariant]
        dependent: Expressions,
    }
);

/// The name under which an inline template is loaded (and so compiled once
/// and kept by the environment): a prefix no file name can have.
const INLINE: &str = "\0inline\0";

/// The template environment of a run.
///
/// A run renders the same few sources for every host (a task's arguments,
/// its `when`, the inventory's templated variables), so each source is
/// compiled once: expressions in a cache of their own, inline templates and
/// template files by the environment's loader, which keeps what it loaded.
pub struct Templates {
    compiled: Compiled,
    dirs: Vec<PathBuf>,
}

impl Templates {
    /// An environment that loads template files from `dirs`, in order.
    pub fn new(dirs: Vec<PathBuf>) -> Templates {
        let own = dirs.clone();
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // As Ansible's template module: trim_blocks on, trailing newline kept.
        if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder().trim_blocks(true).keep_trailing_newline(true).build() {
            env.set_syntax(syntax);
        }
        env.set_loader(move |name: &str| -> Result<Option<String>, Error> {
            if let Some(src) = name.strip_prefix(INLINE) {
                return Ok(Some(src.to_string()));
            }
            if name.split('/').any(|seg| seg == "..") {
                return Ok(None);
            }
            for dir in &dirs {
                let path = dir.join(name);
                match std::fs::read_to_string(&path) {
                    Ok(s) => return Ok(Some(s)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::new(ErrorKind::InvalidOperation, format!("cannot read {}: {e}", path.display()))),
                }
            }
            Ok(BUILTIN_TEMPLATES.iter().find(|(n, _)| *n == name).map(|(_, s)| s.to_string()))
        });
        env.add_function("lookup", lookup);
        env.add_filter("bool", to_bool);
        env.add_filter("mandatory", mandatory);
        env.add_filter("pin", pin);
        env.add_filter("urlsplit", urlsplit);
        env.add_filter("quote", |s: String| crate::transport::shell::quote(&s));
        Templates { compiled: Compiled::new(env, |_| Mutex::new(HashMap::new())), dirs: own }
    }

    fn env(&self) -> &Environment<'static> {
        self.compiled.borrow_owner()
    }

    /// Evaluate the expression `expr` (compiled once per source) against `ctx`.
    fn eval(&self, expr: &str, ctx: Value) -> Result<Value, Error> {
        self.compiled.with_dependent(|env, cache| {
            let cached = cache.lock().unwrap_or_else(PoisonError::into_inner).get(expr).cloned();
            let e = match cached {
                Some(e) => e,
                None => {
                    let e = Arc::new(env.compile_expression_owned(expr.to_string())?);
                    cache.lock().unwrap_or_else(PoisonError::into_inner).insert(expr.to_string(), e.clone());
                    e
                }
            };
            e.eval(ctx)
        })
    }

    /// Whether a templates folder has a file `name` of its own (one that
    /// replaces the built-in template of that name).
    pub fn has_file(&self, name: &str) -> bool {
        !name.split('/').any(|seg| seg == "..") && self.dirs.iter().any(|d| d.join(name).is_file())
    }

    /// Whether `s` contains template syntax at all.
    pub fn is_template(s: &str) -> bool {
        // One search for `{` (memchr), not one per opening.
        let mut from = 0;
        while let Some(i) = s[from..].find('{') {
            let at = from + i;
            if matches!(s.as_bytes().get(at + 1), Some(b'{' | b'%' | b'#')) {
                return true;
            }
            from = at + 1;
        }
        false
    }

    /// Render a template given inline.
    pub fn render_str<C: Context + ?Sized>(&self, src: &str, ctx: &C) -> Result<String, String> {
        if !Templates::is_template(src) {
            return Ok(src.to_string());
        }
        let name = format!("{INLINE}{src}");
        let tmpl = self.env().get_template(&name).map_err(describe_inline)?;
        tmpl.render(ctx.context()).map_err(describe_inline)
    }

    /// Render the template file `name`.
    pub fn render_file<C: Context + ?Sized>(&self, name: &str, ctx: &C) -> Result<String, String> {
        let tmpl = self.env().get_template(name).map_err(|e| {
            if e.kind() == ErrorKind::TemplateNotFound {
                format!("template `{name}` not found in the templates folder")
            } else {
                describe(e)
            }
        })?;
        tmpl.render(ctx.context()).map_err(describe)
    }

    /// Check that a `when` expression parses.
    pub fn check_expr(&self, expr: &str) -> Result<(), String> {
        self.env().compile_expression(expr).map(|_| ()).map_err(describe_inline)
    }

    /// Evaluate a `when` expression to a boolean (Ansible's truthiness,
    /// plus `yes`/`no` strings).
    pub fn eval_bool<C: Context + ?Sized>(&self, expr: &str, ctx: &C) -> Result<bool, String> {
        let v = self.eval(expr, ctx.context()).map_err(describe_inline)?;
        if let Some(s) = v.as_str() {
            if let Some(b) = parse_bool(s) {
                return Ok(b);
            }
        }
        Ok(v.is_true())
    }

    /// Render every string inside a JSON value. A string that is one whole
    /// `{{ expr }}` keeps the expression's type.
    pub fn render_value<C: Context + ?Sized>(&self, v: &Json, ctx: &C) -> Result<Json, String> {
        Ok(match v {
            Json::String(s) => {
                if !Templates::is_template(s) {
                    return Ok(v.clone());
                }
                if let Some(expr) = single_expression(s) {
                    let out = self.eval(expr, ctx.context()).map_err(describe_inline)?;
                    if out.is_undefined() {
                        return Err(format!("`{}` is undefined", expr.trim()));
                    }
                    serde_json::to_value(&out).map_err(|e| e.to_string())?
                } else {
                    Json::String(self.render_str(s, ctx)?)
                }
            }
            Json::Array(items) => Json::Array(items.iter().map(|i| self.render_value(i, ctx)).collect::<Result<_, _>>()?),
            Json::Object(map) => {
                let mut out = serde_json::Map::new();
                for (k, v) in map {
                    out.insert(k.clone(), self.render_value(v, ctx)?);
                }
                Json::Object(out)
            }
            other => other.clone(),
        })
    }
}

/// `{{ expr }}` and nothing else: the expression.
fn single_expression(s: &str) -> Option<&str> {
    let inner = s.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner)
}

/// For inline templates (task arguments, `when`): no line number.
fn describe_inline(e: Error) -> String {
    let mut msg = describe(e);
    if let Some(i) = msg.find(" (template line ") {
        let end = msg[i..].find(')').map(|j| i + j + 1).unwrap_or(msg.len());
        msg.replace_range(i..end, "");
    }
    msg
}

/// One line, without minijinja's debug dump of the whole context (which
/// could hold secrets).
fn describe(e: Error) -> String {
    let mut msg = match e.kind() {
        ErrorKind::UndefinedError => {
            let detail = e.detail().unwrap_or("");
            if detail.is_empty() {
                "undefined variable".to_string()
            } else {
                format!("undefined variable: {detail}")
            }
        }
        // Our own filters' messages (mandatory, lookup) say it all.
        ErrorKind::InvalidOperation => e.detail().map(str::to_string).unwrap_or_else(|| e.kind().to_string()),
        _ => e.detail().map(|d| format!("{}: {d}", e.kind())).unwrap_or_else(|| e.kind().to_string()),
    };
    if let Some(line) = e.line() {
        msg.push_str(&format!(" (template line {line})"));
    }
    if let Some(src) = std::error::Error::source(&e) {
        msg.push_str(&format!(": {src}"));
    }
    msg
}

/// YAML 1.1 / Ansible booleans.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "yes" | "y" | "true" | "on" | "1" => Some(true),
        "no" | "n" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

fn lookup(kind: String, name: String) -> Result<Value, Error> {
    match kind.as_str() {
        "env" => match std::env::var(&name) {
            Ok(v) => Ok(Value::from(v)),
            Err(_) => Err(Error::new(ErrorKind::InvalidOperation, format!("environment variable {name} is not set"))),
        },
        other => Err(Error::new(ErrorKind::InvalidOperation, format!("lookup plugin `{other}` is not supported (only `env`)"))),
    }
}

fn to_bool(v: Value) -> bool {
    match v.as_str() {
        Some(s) => parse_bool(s).unwrap_or(false),
        None => v.is_true(),
    }
}

fn mandatory(v: Value, msg: Option<String>) -> Result<Value, Error> {
    if v.is_undefined() || v.is_none() || v.as_str() == Some("") {
        Err(Error::new(ErrorKind::InvalidOperation, msg.unwrap_or_else(|| "a mandatory variable is not set".into())))
    } else {
        Ok(v)
    }
}

/// `name | pin(version)`: `name=version`, or `name` when version is empty.
fn pin(name: String, version: Option<String>) -> String {
    match version.filter(|v| !v.trim().is_empty()) {
        Some(v) => format!("{name}={}", v.trim()),
        None => name,
    }
}

/// `url | urlsplit(part)`, as Ansible's: `scheme`, `hostname`, `port`,
/// `path`, `query`, `fragment` (`netloc` too).
fn urlsplit(url: String, part: String) -> Result<Value, Error> {
    let u = reqwest::Url::parse(&url).map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("urlsplit: `{url}`: {e}")))?;
    let s = |v: &str| Value::from(v.to_string());
    Ok(match part.as_str() {
        "scheme" => s(u.scheme()),
        "hostname" => s(u.host_str().unwrap_or("").trim_matches(|c| c == '[' || c == ']')),
        "port" => u.port().map(Value::from).unwrap_or(Value::from(())),
        "path" => s(u.path()),
        "query" => s(u.query().unwrap_or("")),
        "fragment" => s(u.fragment().unwrap_or("")),
        "netloc" => s(&format!("{}{}", u.host_str().unwrap_or(""), u.port().map(|p| format!(":{p}")).unwrap_or_default())),
        other => return Err(Error::new(ErrorKind::InvalidOperation, format!("urlsplit: unknown part `{other}`"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlsplit_gives_the_parts_of_a_url() {
        let t = Templates::new(vec![]);
        let vars = Vars::new();
        let scope = Scope::new(vec![&vars]);
        let r = |e: &str| t.render_str(e, &scope).unwrap();
        assert_eq!(r("{{ 'https://gitlab.example.com:8443/x' | urlsplit('hostname') }}"), "gitlab.example.com");
        assert_eq!(r("{{ 'https://gitlab.example.com:8443/x' | urlsplit('port') }}"), "8443");
        assert!(t.render_str("{{ 'x' | urlsplit('hostname') }}", &scope).is_err());
    }

    #[test]
    fn scopes_layer_without_copying() {
        let low: Vars = serde_json::from_str(r#"{"a": 1, "b": 1}"#).unwrap();
        let high: Vars = serde_json::from_str(r#"{"b": 2}"#).unwrap();
        let s = Scope::new(vec![&low]).with(&high);
        let t = Templates::new(vec![]);
        assert_eq!(t.render_str("{{ a }}{{ b }}", &s).unwrap(), "12");
        assert_eq!(s.get("b"), Some(Json::from(2)));
        assert_eq!(serde_json::to_value(s.context()).unwrap(), serde_json::json!({"a": 1, "b": 2}));
    }
    use serde_json::json;

    #[test]
    fn a_lazy_layer_reads_as_the_converted_one() {
        let vars: Vars = serde_json::from_str(r#"{"a": 1, "m": {"k": [1, 2]}, "s": "x"}"#).unwrap();
        let t = Templates::new(vec![]);
        let eager = Shared::new(&vars);
        let lazy = Shared::lazy(Arc::new(vars));
        for src in ["{{ a }}-{{ m.k[1] }}-{{ s }}", "{{ m | tojson }}", "{{ 'a' in m }}{{ m.k | length }}", "{{ nope is defined }}"] {
            assert_eq!(t.render_str(src, &Scope::on(&lazy)).unwrap(), t.render_str(src, &Scope::on(&eager)).unwrap(), "{src}");
        }
        assert!(t.render_str("{{ nope }}", &Scope::on(&lazy)).is_err(), "strict: an unknown name is an error");
        assert_eq!(Scope::on(&lazy).get("a"), Some(json!(1)));
        let v = t.render_value(&json!("{{ m }}"), &Scope::on(&lazy)).unwrap();
        assert_eq!(v, json!({"k": [1, 2]}));
    }

    #[test]
    fn template_syntax_is_found_anywhere() {
        for s in ["{{ a }}", "x {% if a %}", "{# c #}", "{ {{x}}", "{{", "a{%"] {
            assert!(Templates::is_template(s), "{s}");
        }
        for s in ["", "{", "plain", "{ a }", "a{", "}}{ %", "json: {\"a\": 1}"] {
            assert!(!Templates::is_template(s), "{s}");
        }
    }

    #[test]
    fn strict_undefined_is_an_error() {
        let t = Templates::new(vec![]);
        let err = t.render_str("x={{ nope }}", &json!({})).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
    }

    #[test]
    fn single_expression_keeps_type() {
        let t = Templates::new(vec![]);
        let v = t.render_value(&json!("{{ items }}"), &json!({"items": [1, 2]})).unwrap();
        assert_eq!(v, json!([1, 2]));
        let v = t.render_value(&json!("a-{{ n }}"), &json!({"n": 3})).unwrap();
        assert_eq!(v, json!("a-3"));
    }

    #[test]
    fn when_accepts_yaml11_strings() {
        let t = Templates::new(vec![]);
        assert!(t.eval_bool("flag", &json!({"flag": "yes"})).unwrap());
        assert!(!t.eval_bool("flag", &json!({"flag": "no"})).unwrap());
        assert!(t.eval_bool("os == 'Debian'", &json!({"os": "Debian"})).unwrap());
        assert!(t.check_expr("a ==").is_err());
    }

    #[test]
    fn mandatory_says_what_to_set_and_pin_pins() {
        let t = Templates::new(vec![]);
        let err = t.render_str("{{ nope | mandatory('set nope to X') }}", &json!({})).unwrap_err();
        assert!(err.contains("set nope to X"), "{err}");
        let v = t.render_value(&json!("{{ ['a', 'b'] | map('pin', v) | list }}"), &json!({"v": "1.2"})).unwrap();
        assert_eq!(v, json!(["a=1.2", "b=1.2"]));
        let v = t.render_value(&json!("{{ ['a'] | map('pin', '') | list }}"), &json!({})).unwrap();
        assert_eq!(v, json!(["a"]));
        assert!(BUILTIN_TEMPLATES.iter().all(|(n, _)| t.env().get_template(n).is_ok()));
    }

    #[test]
    fn env_lookup_of_missing_variable_fails() {
        let t = Templates::new(vec![]);
        let err = t.render_str("{{ lookup('env', 'BOOTSTRAP_TEST_SURELY_UNSET') }}", &json!({})).unwrap_err();
        assert!(err.contains("BOOTSTRAP_TEST_SURELY_UNSET"), "{err}");
    }
}

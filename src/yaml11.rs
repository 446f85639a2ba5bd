//! YAML as Ansible reads it: YAML 1.1 scalars (PyYAML's SafeLoader), with
//! a position for every node.
//!
//! Inventories and variable files must mean what they mean to Ansible:
//! `yes` is a boolean, `0644` an octal number, `1e5` a string, anchors,
//! aliases and `<<` merge keys work, a duplicate key keeps the last value,
//! and `!vault` marks an inline Vault value (`!unsafe` a plain string).
//! Only plain (unquoted) scalars are resolved; quoted ones stay strings.
//! Every node keeps its line and column, so a later check can point at it.

use std::collections::HashMap;

use serde_json::{Map, Number, Value as Json};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::yamlpos::Pos;

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub pos: Pos,
    /// Where its key starts, for a mapping's value.
    pub key_pos: Option<Pos>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// An inline `!vault` value: the encrypted text.
    Vault(String),
    Seq(Vec<Node>),
    /// Keys in document order, each once (the last value of a duplicate).
    Map(Vec<(String, Node)>),
}

/// A document that does not load, with where.
#[derive(Debug, Clone)]
pub struct LoadError {
    pub pos: Pos,
    pub message: String,
}

impl Node {
    /// Where to point at this value: its key, if it has one.
    pub fn at(&self) -> Pos {
        self.key_pos.unwrap_or(self.pos)
    }

    /// The mapping's entries, if it is one.
    pub fn as_map(&self) -> Option<&[(String, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// What kind of value this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::Float(_) => "a number",
            Value::Str(_) | Value::Vault(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    /// As JSON; `vault` turns an inline vault value into its plain text.
    pub fn to_json<E>(&self, vault: &mut dyn FnMut(&str, Pos) -> Result<String, E>) -> Result<Json, E> {
        Ok(match &self.value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Float(f) => Number::from_f64(*f).map(Json::Number).unwrap_or_else(|| Json::String(f.to_string())),
            Value::Str(s) => Json::String(s.clone()),
            Value::Vault(v) => Json::String(vault(v, self.at())?),
            Value::Seq(items) => Json::Array(items.iter().map(|i| i.to_json(vault)).collect::<Result<_, _>>()?),
            Value::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    m.insert(k.clone(), v.to_json(vault)?);
                }
                Json::Object(m)
            }
        })
    }
}

/// Load one YAML document. `None` for an empty one.
pub fn load(source: &str) -> Result<Option<Node>, LoadError> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(source);
    if let Err(e) = parser.load(&mut b, true) {
        let m = e.marker();
        return Err(LoadError { pos: pos(m), message: e.info().to_string() });
    }
    if let Some(err) = b.error {
        return Err(err);
    }
    match b.docs.len() {
        0 => Ok(None),
        1 => Ok(b.docs.pop()),
        _ => Err(LoadError {
            pos: b.second_doc.unwrap_or(Pos { line: 1, column: 1 }),
            message: "expected one YAML document, found several".into(),
        }),
    }
}

fn pos(m: &Marker) -> Pos {
    Pos { line: m.line().max(1), column: m.col() + 1 }
}

enum Open {
    Seq { items: Vec<Node>, pos: Pos, anchor: usize },
    Map { entries: Vec<(String, Node)>, key: Option<Node>, pos: Pos, anchor: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    docs: Vec<Node>,
    anchors: HashMap<usize, Node>,
    error: Option<LoadError>,
    second_doc: Option<Pos>,
}

impl Builder {
    fn fail(&mut self, pos: Pos, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(LoadError { pos, message: message.into() });
        }
    }

    /// A finished node goes into its parent (or is a document).
    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => {
                if !self.docs.is_empty() && self.second_doc.is_none() {
                    self.second_doc = Some(node.pos);
                }
                self.docs.push(node);
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { key, .. }) if key.is_none() => *key = Some(node),
            Some(Open::Map { entries, key, .. }) => {
                let Some(k) = key.take() else { return };
                let result = insert(entries, k, node);
                if let Err((pos, msg)) = result {
                    self.fail(pos, msg);
                }
            }
        }
    }
}

/// Add `value` under `key`: a merge key (`<<`) merges mappings in (keys
/// already present win), any other key is set (the last one wins).
fn insert(entries: &mut Vec<(String, Node)>, key: Node, mut value: Node) -> Result<(), (Pos, String)> {
    value.key_pos = Some(key.pos);
    if matches!(&key.value, Value::Str(s) if s == "<<") && key_is_merge(&key) {
        let sources: Vec<Node> = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) => items,
            _ => return Err((value.pos, "a merge key (<<) takes a mapping or a list of mappings".into())),
        };
        for src in sources {
            let Value::Map(m) = src.value else {
                return Err((src.pos, "a merge key (<<) takes a mapping or a list of mappings".into()));
            };
            for (k, v) in m {
                if !entries.iter().any(|(e, _)| *e == k) {
                    entries.push((k, v));
                }
            }
        }
        return Ok(());
    }
    let k = match key.value {
        Value::Str(s) | Value::Vault(s) => s,
        Value::Null => "null".into(),
        Value::Bool(b) => if b { "true" } else { "false" }.into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Seq(_) | Value::Map(_) => return Err((key.pos, "a mapping key must be a scalar".into())),
    };
    match entries.iter_mut().find(|(e, _)| *e == k) {
        Some(slot) => slot.1 = value,
        None => entries.push((k, value)),
    }
    Ok(())
}

/// `<<` is a merge key only when plain; the builder marks quoted ones.
fn key_is_merge(key: &Node) -> bool {
    key.pos.column != 0
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        let at = pos(&mark);
        match ev {
            Event::Scalar(text, style, anchor, tag) => match scalar(text, style, tag.as_ref()) {
                Ok(value) => {
                    let mut node = Node { value, pos: at, key_pos: None };
                    // A quoted `<<` is an ordinary key: mark it (column 0
                    // never occurs otherwise).
                    if style != TScalarStyle::Plain && matches!(&node.value, Value::Str(s) if s == "<<") {
                        node.pos.column = 0;
                    }
                    self.push(node, anchor)
                }
                Err(msg) => self.fail(at, msg),
            },
            Event::SequenceStart(anchor, tag) => {
                if let Some(t) = tag.filter(|t| !is_tag(t, "seq")) {
                    return self.fail(at, format!("unsupported tag {}{} on a list", t.handle, t.suffix));
                }
                self.stack.push(Open::Seq { items: Vec::new(), pos: at, anchor })
            }
            Event::MappingStart(anchor, tag) => {
                if let Some(t) = tag.filter(|t| !is_tag(t, "map")) {
                    return self.fail(at, format!("unsupported tag {}{} on a mapping", t.handle, t.suffix));
                }
                self.stack.push(Open::Map { entries: Vec::new(), key: None, pos: at, anchor })
            }
            Event::SequenceEnd => {
                if let Some(Open::Seq { items, pos, anchor }) = self.stack.pop() {
                    self.push(Node { value: Value::Seq(items), pos, key_pos: None }, anchor);
                }
            }
            Event::MappingEnd => {
                if let Some(Open::Map { entries, pos, anchor, .. }) = self.stack.pop() {
                    self.push(Node { value: Value::Map(entries), pos, key_pos: None }, anchor);
                }
            }
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(mut n) => {
                    n.pos = if n.pos.column == 0 { n.pos } else { at };
                    self.push(n, 0)
                }
                None => self.fail(at, "an alias refers to an unknown anchor"),
            },
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
        }
    }
}

fn is_tag(t: &Tag, name: &str) -> bool {
    (t.handle == "tag:yaml.org,2002:" || t.handle == "!!") && t.suffix == name
}

/// A scalar as PyYAML's SafeLoader (and so Ansible) constructs it.
fn scalar(text: String, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(t) = tag {
        let name = if t.handle == "!" {
            format!("!{}", t.suffix)
        } else if t.handle == "!!" || t.handle == "tag:yaml.org,2002:" {
            format!("!!{}", t.suffix)
        } else {
            format!("{}{}", t.handle, t.suffix)
        };
        return match name.as_str() {
            "!vault" => Ok(Value::Vault(text)),
            "!unsafe" | "!!str" => Ok(Value::Str(text)),
            "!!int" => int(&text).map(Value::Int).ok_or_else(|| format!("`{text}` is not an integer")),
            "!!float" => {
                float(&text).or_else(|| int(&text).map(|i| i as f64)).map(Value::Float).ok_or_else(|| format!("`{text}` is not a number"))
            }
            "!!bool" => boolean(&text).map(Value::Bool).ok_or_else(|| format!("`{text}` is not a boolean")),
            "!!null" => Ok(Value::Null),
            other => Err(format!("unsupported tag {other}")),
        };
    }
    if style != TScalarStyle::Plain {
        return Ok(Value::Str(text));
    }
    Ok(resolve(text))
}

/// The implicit type of a plain scalar (YAML 1.1).
pub fn resolve(text: String) -> Value {
    if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL") {
        return Value::Null;
    }
    if let Some(b) = boolean(&text) {
        return Value::Bool(b);
    }
    if let Some(i) = int(&text) {
        return Value::Int(i);
    }
    if let Some(f) = float(&text) {
        return Value::Float(f);
    }
    Value::Str(text)
}

fn boolean(s: &str) -> Option<bool> {
    match s {
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => Some(true),
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

fn split_sign(s: &str) -> (i64, &str) {
    match s.as_bytes().first() {
        Some(b'-') => (-1, &s[1..]),
        Some(b'+') => (1, &s[1..]),
        _ => (1, s),
    }
}

fn int(s: &str) -> Option<i64> {
    let (sign, body) = split_sign(s);
    let digits_ok = |d: &str, f: fn(char) -> bool| !d.is_empty() && d.chars().all(|c| c == '_' || f(c)) && d.chars().any(|c| c != '_');
    let clean = |d: &str| d.replace('_', "");
    let v = if let Some(b) = body.strip_prefix("0b") {
        if !digits_ok(b, |c| c == '0' || c == '1') {
            return None;
        }
        i64::from_str_radix(&clean(b), 2).ok()?
    } else if let Some(h) = body.strip_prefix("0x") {
        if !digits_ok(h, |c| c.is_ascii_hexdigit()) {
            return None;
        }
        i64::from_str_radix(&clean(h), 16).ok()?
    } else if body == "0" {
        0
    } else if let Some(o) = body.strip_prefix('0') {
        if !digits_ok(o, |c| ('0'..='7').contains(&c)) {
            return None;
        }
        i64::from_str_radix(&clean(o), 8).ok()?
    } else if body.contains(':') {
        sexagesimal(body)?.round() as i64
    } else {
        let mut chars = body.chars();
        if !matches!(chars.next(), Some('1'..='9')) || !body.chars().all(|c| c == '_' || c.is_ascii_digit()) {
            return None;
        }
        clean(body).parse::<i64>().ok()?
    };
    Some(sign * v)
}

/// `190:20:30`, base 60 (YAML 1.1); the first part must start 1-9 for ints.
fn sexagesimal(body: &str) -> Option<f64> {
    let parts: Vec<&str> = body.split(':').collect();
    let first = parts.first()?;
    if !matches!(first.chars().next(), Some('1'..='9')) || !first.chars().all(|c| c == '_' || c.is_ascii_digit()) {
        return None;
    }
    let mut v: f64 = first.replace('_', "").parse().ok()?;
    for p in &parts[1..] {
        let ok = !p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()) && (p.len() < 2 || p.as_bytes()[0] <= b'5');
        if !ok {
            return None;
        }
        v = v * 60.0 + p.parse::<f64>().ok()?;
    }
    Some(v)
}

fn float(s: &str) -> Option<f64> {
    let (sign, body) = split_sign(s);
    let sign = sign as f64;
    match body {
        ".inf" | ".Inf" | ".INF" => return Some(sign * f64::INFINITY),
        ".nan" | ".NaN" | ".NAN" if s == body => return Some(f64::NAN),
        _ => {}
    }
    // [0-9][0-9_]*\.[0-9_]*([eE][-+][0-9]+)? | \.[0-9][0-9_]*([eE][-+][0-9]+)?
    let (mantissa, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    if let Some(e) = exp {
        let digits = e.strip_prefix(['-', '+'])?;
        if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
    }
    let (int_part, frac) = mantissa.split_once('.')?;
    let ok_int = if int_part.is_empty() {
        frac.starts_with(|c: char| c.is_ascii_digit())
    } else {
        int_part.starts_with(|c: char| c.is_ascii_digit()) && int_part.chars().all(|c| c == '_' || c.is_ascii_digit())
    };
    if !ok_int || !frac.chars().all(|c| c == '_' || c.is_ascii_digit()) {
        return None;
    }
    let text = format!("{}.{}{}", if int_part.is_empty() { "0" } else { int_part }, frac, exp.map(|e| format!("e{e}")).unwrap_or_default())
        .replace('_', "");
    text.trim_end_matches('.').parse::<f64>().ok().or_else(|| format!("{text}0").parse::<f64>().ok()).map(|v| sign * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(src: &str) -> Json {
        let n = load(src).unwrap().unwrap();
        n.to_json::<()>(&mut |v, _| Ok(format!("<{}>", v.len()))).unwrap()
    }

    #[test]
    fn scalars_resolve_as_pyyaml_does() {
        let j = json("a: yes\nb: 'yes'\nc: 0644\nd: 1e5\ne: 1.5e+3\nf: 0x1F\ng: 1_000\nh: ~\ni: 190:20:30\nj: .5\nk: 09\nl: 12.\nm: Off\nn: y\no: -0b101\n");
        assert_eq!(j["a"], true);
        assert_eq!(j["b"], "yes");
        assert_eq!(j["c"], 420);
        assert_eq!(j["d"], "1e5");
        assert_eq!(j["e"], 1500.0);
        assert_eq!(j["f"], 31);
        assert_eq!(j["g"], 1000);
        assert_eq!(j["h"], Json::Null);
        assert_eq!(j["i"], 685230);
        assert_eq!(j["j"], 0.5);
        assert_eq!(j["k"], "09", "not octal, not decimal: a string");
        assert_eq!(j["l"], 12.0);
        assert_eq!(j["m"], false);
        assert_eq!(j["n"], "y");
        assert_eq!(j["o"], -5);
    }

    #[test]
    fn anchors_merge_keys_and_duplicates() {
        let j = json("base: &b {x: 1, y: 2}\nuse:\n  <<: *b\n  y: 3\ndup: 1\ndup: 2\nq:\n  '<<': 4\n");
        assert_eq!(j["use"], serde_json::json!({"y": 3, "x": 1}));
        assert_eq!(j["dup"], 2);
        assert_eq!(j["q"]["<<"], 4);
    }

    #[test]
    fn vault_tags_and_positions() {
        let src = "all:\n  vars:\n    pw: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6162\n    other: !unsafe '{{ x }}'\n";
        let n = load(src).unwrap().unwrap();
        let vars = &n.as_map().unwrap()[0].1.as_map().unwrap()[0].1;
        let pw = &vars.as_map().unwrap()[0].1;
        assert!(matches!(&pw.value, Value::Vault(v) if v.starts_with("$ANSIBLE_VAULT;1.1;AES256\n6162")), "{pw:?}");
        let other = &vars.as_map().unwrap()[1];
        assert_eq!(other.1.value, Value::Str("{{ x }}".into()));
        assert_eq!(vars.as_map().unwrap()[0].0, "pw");
        let e = load("a: [1\n").unwrap_err();
        assert!(e.pos.line >= 1, "{e:?}");
        assert!(load("a: !foo x\n").is_err());
        assert!(load("").unwrap().is_none());
        assert!(load("a: 1\n---\nb: 2\n").is_err());
    }
}

//! Python literals, as `ast.literal_eval` reads them: how Ansible's INI
//! inventory types a value. `4` is a number, `'4'` and `"x y"` strings,
//! `['a', 'b']` a list, `{'k': 1}` a mapping, `True`/`None` what they say;
//! anything that is not a literal (`yes`, `01`, `a b`) stays the text it
//! was. Comments (`# ...`) after a literal are ignored, as Python does.

use serde_json::{Map, Number, Value as Json};

/// The value of `text` if it is a Python literal.
pub fn literal(text: &str) -> Option<Json> {
    let mut p = P { s: text.as_bytes(), i: 0, depth: 0 };
    // Leading whitespace at the top is an indentation error in Python.
    if text.starts_with([' ', '\t']) {
        return None;
    }
    let v = p.expr()?;
    p.skip_ws(false);
    (p.i == p.s.len()).then_some(v)
}

struct P<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// Spaces and comments; inside brackets also newlines.
    fn skip_ws(&mut self, nested: bool) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\x0c' => self.i += 1,
                b'\n' | b'\r' if nested => self.i += 1,
                b'\\' if self.s.get(self.i + 1) == Some(&b'\n') => self.i += 2,
                b'#' => {
                    while let Some(c) = self.peek() {
                        if c == b'\n' {
                            break;
                        }
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.skip_ws(self.depth > 0);
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expr(&mut self) -> Option<Json> {
        if self.depth > 64 {
            return None;
        }
        self.skip_ws(self.depth > 0);
        let c = self.peek()?;
        match c {
            b'[' => self.seq(b']'),
            b'(' => self.seq(b')'),
            b'{' => self.map(),
            b'-' | b'+' => {
                self.i += 1;
                self.skip_ws(self.depth > 0);
                let n = self.number()?;
                Some(if c == b'-' { negate(n)? } else { n })
            }
            b'0'..=b'9' | b'.' => {
                if self.s[self.i..].starts_with(b"...") {
                    self.i += 3;
                    return Some(Json::String("...".into()));
                }
                self.number()
            }
            b'\'' | b'"' => self.strings(),
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = self.i;
                while self.peek().map(|c| c.is_ascii_alphanumeric() || c == b'_').unwrap_or(false) {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.s[start..self.i]).ok()?;
                match word {
                    "True" => Some(Json::Bool(true)),
                    "False" => Some(Json::Bool(false)),
                    "None" => Some(Json::Null),
                    w if matches!(self.peek(), Some(b'\'' | b'"')) && is_prefix(w) => {
                        self.i = start;
                        self.strings()
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    fn seq(&mut self, close: u8) -> Option<Json> {
        self.i += 1;
        self.depth += 1;
        let mut items = Vec::new();
        let mut tuple_comma = false;
        loop {
            if self.eat(close) {
                break;
            }
            items.push(self.expr()?);
            if self.eat(b',') {
                tuple_comma = true;
                continue;
            }
            if self.eat(close) {
                break;
            }
            return None;
        }
        self.depth -= 1;
        // `(1)` is just 1; `(1,)` and `()` are tuples (lists in JSON).
        if close == b')' && items.len() == 1 && !tuple_comma {
            return items.pop();
        }
        Some(Json::Array(items))
    }

    fn map(&mut self) -> Option<Json> {
        self.i += 1;
        self.depth += 1;
        let mut m = Map::new();
        let mut set: Vec<Json> = Vec::new();
        loop {
            if self.eat(b'}') {
                break;
            }
            let k = self.expr()?;
            if self.eat(b':') {
                if !set.is_empty() {
                    return None;
                }
                let v = self.expr()?;
                let key = match k {
                    Json::String(s) => s,
                    Json::Number(n) => n.to_string(),
                    Json::Bool(b) => if b { "True" } else { "False" }.to_string(),
                    Json::Null => "None".to_string(),
                    _ => return None,
                };
                m.insert(key, v);
            } else {
                if !m.is_empty() {
                    return None;
                }
                if matches!(k, Json::Array(_) | Json::Object(_)) {
                    return None;
                }
                set.push(k);
            }
            if self.eat(b',') {
                continue;
            }
            if self.eat(b'}') {
                break;
            }
            return None;
        }
        self.depth -= 1;
        Some(if set.is_empty() { Json::Object(m) } else { Json::Array(set) })
    }

    fn number(&mut self) -> Option<Json> {
        let start = self.i;
        while self.peek().map(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.').unwrap_or(false) {
            // An exponent's sign.
            if matches!(self.peek(), Some(b'e' | b'E'))
                && matches!(self.s.get(self.i + 1), Some(b'+' | b'-'))
                && !self.s[start..].starts_with(b"0x")
            {
                self.i += 1;
            }
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        number(t)
    }

    fn strings(&mut self) -> Option<Json> {
        let mut out = String::new();
        let mut any = false;
        loop {
            self.skip_ws(self.depth > 0);
            let start = self.i;
            while self.peek().map(|c| c.is_ascii_alphabetic()).unwrap_or(false) {
                self.i += 1;
            }
            let prefix = std::str::from_utf8(&self.s[start..self.i]).ok()?.to_ascii_lowercase();
            if !matches!(self.peek(), Some(b'\'' | b'"')) || !is_prefix(&prefix) {
                self.i = start;
                break;
            }
            out.push_str(&self.string(prefix.contains('r'))?);
            any = true;
        }
        any.then_some(Json::String(out))
    }

    fn string(&mut self, raw: bool) -> Option<String> {
        let q = self.peek()?;
        let triple = self.s[self.i..].starts_with(&[q, q, q]);
        self.i += if triple { 3 } else { 1 };
        let mut out: Vec<u8> = Vec::new();
        loop {
            let c = self.peek()?;
            if c == q && (!triple || self.s[self.i..].starts_with(&[q, q, q])) {
                self.i += if triple { 3 } else { 1 };
                break;
            }
            if c == b'\n' && !triple {
                return None;
            }
            if c == b'\\' && !raw {
                self.i += 1;
                let e = self.peek()?;
                self.i += 1;
                match e {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'0'..=b'7' => {
                        let mut v = u32::from(e - b'0');
                        for _ in 0..2 {
                            match self.peek() {
                                Some(d @ b'0'..=b'7') => {
                                    v = v * 8 + u32::from(d - b'0');
                                    self.i += 1;
                                }
                                _ => break,
                            }
                        }
                        push_char(&mut out, char::from_u32(v)?);
                    }
                    b'x' | b'u' | b'U' => {
                        let n = match e {
                            b'x' => 2,
                            b'u' => 4,
                            _ => 8,
                        };
                        let hex = std::str::from_utf8(self.s.get(self.i..self.i + n)?).ok()?;
                        self.i += n;
                        push_char(&mut out, char::from_u32(u32::from_str_radix(hex, 16).ok()?)?);
                    }
                    b'a' => out.push(7),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'v' => out.push(11),
                    b'\n' => {}
                    b'\\' | b'\'' | b'"' => out.push(e),
                    other => {
                        out.push(b'\\');
                        out.push(other);
                    }
                }
                continue;
            }
            if c == b'\\' && raw {
                out.push(c);
                self.i += 1;
                if let Some(n) = self.peek() {
                    out.push(n);
                    self.i += 1;
                }
                continue;
            }
            out.push(c);
            self.i += 1;
        }
        String::from_utf8(out).ok()
    }
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

fn is_prefix(p: &str) -> bool {
    matches!(p.to_ascii_lowercase().as_str(), "" | "r" | "u" | "b" | "br" | "rb")
}

fn negate(n: Json) -> Option<Json> {
    match n {
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(Json::from(i.checked_neg()?))
            } else {
                Number::from_f64(-n.as_f64()?).map(Json::Number)
            }
        }
        _ => None,
    }
}

/// A Python number literal (no sign): ints with `_`, `0x`/`0o`/`0b`, floats.
fn number(t: &str) -> Option<Json> {
    let lower = t.to_ascii_lowercase();
    let digits_ok = |d: &str, ok: fn(char) -> bool| {
        !d.is_empty() && !d.starts_with('_') && !d.ends_with('_') && !d.contains("__") && d.chars().all(|c| c == '_' || ok(c))
    };
    for (prefix, radix, ok) in [
        ("0x", 16, (|c: char| c.is_ascii_hexdigit()) as fn(char) -> bool),
        ("0o", 8, |c| ('0'..='7').contains(&c)),
        ("0b", 2, |c| c == '0' || c == '1'),
    ] {
        if let Some(d) = lower.strip_prefix(prefix) {
            let d = d.strip_prefix('_').unwrap_or(d);
            return digits_ok(d, ok).then(|| i64::from_str_radix(&d.replace('_', ""), radix).ok().map(Json::from)).flatten();
        }
    }
    if lower.ends_with('j') {
        // complex: the plugin turns it back into its text.
        return None;
    }
    let is_float = lower.contains('.') || lower.contains('e');
    if !is_float {
        if !digits_ok(&lower, |c| c.is_ascii_digit()) {
            return None;
        }
        let clean = lower.replace('_', "");
        // Leading zeros only for zero itself.
        if clean.len() > 1 && clean.starts_with('0') && clean.chars().any(|c| c != '0') {
            return None;
        }
        return clean.parse::<i64>().ok().map(Json::from).or_else(|| clean.parse::<u64>().ok().map(Json::from));
    }
    let (mant, exp) = match lower.split_once('e') {
        Some((m, e)) => (m, Some(e)),
        None => (lower.as_str(), None),
    };
    if let Some(e) = exp {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        if !digits_ok(e, |c| c.is_ascii_digit()) {
            return None;
        }
    }
    let (ip, fp) = mant.split_once('.').unwrap_or((mant, ""));
    if ip.is_empty() && fp.is_empty() {
        return None;
    }
    if (!ip.is_empty() && !digits_ok(ip, |c| c.is_ascii_digit())) || (!fp.is_empty() && !digits_ok(fp, |c| c.is_ascii_digit())) {
        return None;
    }
    let v: f64 = lower.replace('_', "").parse().ok()?;
    Number::from_f64(v).map(Json::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn literals_as_python_reads_them() {
        assert_eq!(literal("4"), Some(json!(4)));
        assert_eq!(literal("-4"), Some(json!(-4)));
        assert_eq!(literal("1.5"), Some(json!(1.5)));
        assert_eq!(literal("1e3"), Some(json!(1000.0)));
        assert_eq!(literal("0x10"), Some(json!(16)));
        assert_eq!(literal("1_000"), Some(json!(1000)));
        assert_eq!(literal("01"), None);
        assert_eq!(literal("00"), Some(json!(0)));
        assert_eq!(literal("yes"), None);
        assert_eq!(literal("True"), Some(json!(true)));
        assert_eq!(literal("None"), Some(json!(null)));
        assert_eq!(literal("'a b'"), Some(json!("a b")));
        assert_eq!(literal("\"x\" 'y'"), Some(json!("xy")));
        assert_eq!(literal("r'\\d'"), Some(json!("\\d")));
        assert_eq!(literal("'\\n\\x41'"), Some(json!("\nA")));
        assert_eq!(literal("['a', 'b']"), Some(json!(["a", "b"])));
        assert_eq!(literal("(1, 2,)"), Some(json!([1, 2])));
        assert_eq!(literal("(1)"), Some(json!(1)));
        assert_eq!(literal("{'k': [1, {'n': None}]}"), Some(json!({"k": [1, {"n": null}]})));
        assert_eq!(literal("{1, 2}"), Some(json!([1, 2])));
        assert_eq!(literal("1 # comment"), Some(json!(1)));
        assert_eq!(literal("hello world"), None);
        assert_eq!(literal("[1, 2"), None);
        assert_eq!(literal(" 1"), None);
        assert_eq!(literal("1j"), None);
        assert_eq!(literal("..."), Some(json!("...")));
        assert_eq!(literal("{'a': 1,}"), Some(json!({"a": 1})));
    }
}

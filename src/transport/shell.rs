//! Quoting for the POSIX shell scripts we send to hosts.
//!
//! Every value that reaches a host (paths, package names, user names,
//! contents) goes through [`quote`] or a quoted here-document: inventory
//! values are data, never shell syntax. Commands the user writes on purpose
//! (`command`, `shell`, `unless`) are the only raw shell.

/// Quote `s` as one shell word. Single quotes make everything literal;
/// an embedded `'` becomes `'\''`. `=` is never left bare: a first word
/// `A=1` would be an assignment, not a command.
pub fn quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:+,@%".contains(&b)) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Quote each word and join them with spaces.
pub fn join<I, S>(words: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    words.into_iter().map(|w| quote(w.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn quoted_values_reach_the_shell_as_data() {
        let nasty = ["$(touch /tmp/pwned)", "a'b", "x\ny", "`id`", "; rm -rf /", "", "a b", "\"q\"", "ü€"];
        for s in nasty {
            let out = Command::new("sh").arg("-c").arg(format!("printf %s {}", quote(s))).output().unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn a_first_word_with_equals_stays_a_command() {
        // `A=1 echo hi` unquoted is an assignment plus `echo`; quoted, the
        // shell must look for a command named `A=1` and fail.
        let out = Command::new("sh").arg("-c").arg(join(["A=1", "echo", "hi"])).output().unwrap();
        assert_eq!(out.status.code(), Some(127), "{}", String::from_utf8_lossy(&out.stdout));
        assert!(out.stdout.is_empty());
    }
}

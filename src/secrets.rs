//! Secrets: which values are secret, and the one mask that hides them.
//!
//! A [`Redactor`] is made once per run and handed to the reporter; every
//! secret the run learns (become passwords, GitLab tokens, variables named
//! like secrets, runner tokens read from a host or created in GitLab) is
//! added to it by the run's driver, and every text the reporter prints
//! goes through [`Redactor::mask`] whole, before it is split into lines, so
//! a multi-line secret (a PEM key) is masked as a whole too.

use std::sync::{Arc, RwLock};

/// What a masked secret is printed as.
pub const MASK: &str = "********";

/// Whether a variable's name says it holds a secret.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "passwd", "token", "secret", "passphrase"].iter().any(|w| n.contains(w)) || n.ends_with("_pass")
}

/// Replaces every secret value with [`MASK`]. Clones share one set, so a
/// secret found during the run is masked everywhere from then on.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Mask `secret` from now on: the value, its JSON-escaped form, and,
    /// for a multi-line value, each of its lines (a line printed on its own
    /// is masked too).
    pub fn add(&self, secret: &str) {
        let Ok(mut secrets) = self.secrets.write() else { return };
        let mut push = |s: &str, min: usize| {
            // Very short values would mask ordinary text.
            if s.len() >= min && !secrets.iter().any(|x| x == s) {
                secrets.push(s.to_string());
            }
        };
        let esc = serde_json::to_string(secret).unwrap_or_default();
        let esc = esc.trim_matches('"');
        push(secret, 4);
        push(esc, 4);
        // Without surrounding white space too: a value read from a file
        // often ends in a newline that is not printed.
        let trimmed = secret.trim();
        if trimmed != secret {
            push(trimmed, 4);
            let esc = serde_json::to_string(trimmed).unwrap_or_default();
            push(esc.trim_matches('"'), 4);
        }
        if secret.trim_end().contains('\n') {
            for line in secret.lines().map(str::trim).filter(|l| l.len() >= 8) {
                push(line, 8);
                let esc = serde_json::to_string(line).unwrap_or_default();
                push(esc.trim_matches('"'), 8);
            }
        }
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `text` with every secret replaced; longest secrets first, so a
    /// secret that contains another is masked whole.
    pub fn mask(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else { return "(output withheld)".into() };
        let mut out = text.to_string();
        for s in secrets.iter() {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_plain_and_json_escaped() {
        let r = Redactor::default();
        r.add("pa\"ss-word");
        r.add("abc");
        assert_eq!(r.mask("x pa\"ss-word y"), "x ******** y");
        let json = serde_json::to_string(&serde_json::json!({"m": "pa\"ss-word"})).unwrap();
        assert!(!r.mask(&json).contains("ss-word"));
        assert_eq!(r.mask("abc"), "abc", "very short values are not masked");
    }

    #[test]
    fn multi_line_secrets_are_masked_whole_and_by_line() {
        let pem =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU\nAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----\n";
        let r = Redactor::default();
        r.add(pem);
        let whole = r.mask(&format!("value: {pem}done"));
        assert_eq!(whole, "value: ********done");
        for line in pem.lines().filter(|l| l.len() >= 8) {
            assert!(!r.mask(&format!("+{line}")).contains(line), "{line}");
        }
        let json = serde_json::to_string(&serde_json::json!({ "diff": format!("+{}", pem.replace('\n', "\n+")) })).unwrap();
        assert!(!r.mask(&json).contains("b3BlbnNzaC1rZXktdjEAAAAABG5vbmU"));
    }

    #[test]
    fn secret_names() {
        assert!(is_secret_name("ansible_become_password") && is_secret_name("GITLAB_TOKEN") && is_secret_name("ca_secret"));
        assert!(is_secret_name("ansible_ssh_pass") && is_secret_name("ansible_become_pass") && is_secret_name("ansible_password"));
        assert!(!is_secret_name("runner_name") && !is_secret_name("docker_users"));
    }
}

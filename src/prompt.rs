//! Asking the user for a secret (`-k/--ask-pass`).
//!
//! On a terminal the prompt goes to the terminal and the answer is read
//! without echo; otherwise (a CI job, a pipe) one line is read from stdin,
//! so `printf '%s\n' "$PW" | bootstrap apply hosts.yml -k` works. The
//! answer never appears anywhere: the caller adds it to the run's redactor.

use std::io::{BufRead, IsTerminal};

/// Ask for a secret: `prompt` on the terminal, no echo; or one line of stdin.
pub fn secret(prompt: &str) -> Result<String, String> {
    let read = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).map_err(|e| format!("cannot read the password from the terminal: {e}"))?
    } else {
        let mut line = String::new();
        let n = std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("cannot read the password from stdin: {e}"))?;
        if n == 0 {
            return Err("stdin ended before a password line (stdin is not a terminal: give the password as its first line)".into());
        }
        line
    };
    let pw = read.trim_end_matches(['\n', '\r']).to_string();
    if pw.is_empty() {
        return Err("the password is empty".into());
    }
    Ok(pw)
}

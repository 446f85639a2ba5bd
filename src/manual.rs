//! Shell completions and the manual page, generated from the clap
//! definitions of [`crate::cli`], so they name exactly what the parser takes.

use std::io::Write;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::exit;

/// `bootstrap completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> u8 {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "bootstrap", &mut buf);
    write_out(&buf)
}

/// `bootstrap man`: the manual page, roff, on stdout. Each subcommand has
/// its own section, with its options, after the main page's.
pub fn man() -> u8 {
    match render_man() {
        Ok(buf) => write_out(&buf),
        Err(e) => {
            eprintln!("error: cannot render the manual page: {e}");
            exit::INTERNAL
        }
    }
}

fn render_man() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut main = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut main)?;
    let mut text = String::from_utf8_lossy(&main).into_owned();
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = sub.get_name();
        // The subcommands live in this one page, not in pages of their own.
        text = text.replace(&format!("bootstrap\\-{name}(1)"), &format!("\\fBbootstrap {name}\\fR"));
        let mut part = Vec::new();
        let sub = sub.clone().bin_name(format!("bootstrap {name}")).display_name(format!("bootstrap-{name}"));
        let man = clap_mangen::Man::new(sub.clone());
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        if sub.get_after_help().is_some() {
            man.render_extra_section(&mut part)?;
        }
        text.push_str(&format!(".SH \"BOOTSTRAP {}\"\n", name.to_uppercase()));
        // Its sections become subsections of this one.
        for line in String::from_utf8_lossy(&part).lines() {
            if line.starts_with(".ie ") || line.starts_with(".el ") {
                continue;
            }
            match line.strip_prefix(".SH ") {
                Some(title) => text.push_str(&format!(".SS {title}\n")),
                None => {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
    }
    Ok(text.into_bytes())
}

/// Write to stdout; a closed pipe (`| head`) is not an error.
fn write_out(buf: &[u8]) -> u8 {
    let mut out = std::io::stdout().lock();
    match out.write_all(buf).and_then(|_| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write to stdout: {e}");
            exit::INTERNAL
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subcommands() -> Vec<String> {
        Cli::command().get_subcommands().map(|s| s.get_name().to_string()).filter(|n| n != "help").collect()
    }

    #[test]
    fn completions_name_every_subcommand() {
        for shell in [clap_complete::Shell::Bash, clap_complete::Shell::Zsh, clap_complete::Shell::Fish] {
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "bootstrap", &mut buf);
            let text = String::from_utf8(buf).expect("utf-8");
            for sub in subcommands() {
                assert!(text.contains(&sub), "{shell} completions lack `{sub}`");
            }
            assert!(text.contains("--limit") || text.contains("limit"), "{shell}: options too");
        }
    }

    #[test]
    fn man_page_has_a_section_per_subcommand() {
        let text = String::from_utf8(render_man().expect("renders")).expect("utf-8");
        assert!(text.starts_with(".ie") || text.contains(".TH bootstrap"), "{}", &text[..200.min(text.len())]);
        for sub in subcommands() {
            assert!(text.contains(&format!(".SH \"BOOTSTRAP {}\"", sub.to_uppercase())), "no section for `{sub}`");
        }
        assert!(text.contains("ask\\-pass") || text.contains("ask-pass"), "subcommand options are listed");
    }
}

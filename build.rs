//! Build script: the git commit the binary is built from, for `--version`.
//!
//! `BOOTSTRAP_GIT_COMMIT` is the short commit of the repository this crate
//! is the top of, or `unknown` when there is none (a tarball, no git
//! installed, or a crate vendored inside some other repository). It never
//! fails the build.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BOOTSTRAP_GIT_COMMIT");
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let commit = std::env::var("BOOTSTRAP_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        // Only this crate's own repository: not one it happens to sit in.
        let top = git(&["-C", &manifest, "rev-parse", "--show-toplevel"])?;
        let same = Path::new(&top).canonicalize().ok()? == Path::new(&manifest).canonicalize().ok()?;
        if !same {
            return None;
        }
        // Rebuild when HEAD moves: HEAD itself, the branch it names, packed refs.
        for p in ["HEAD", "packed-refs"] {
            if let Some(path) = git(&["-C", &manifest, "rev-parse", "--git-path", p]) {
                println!("cargo:rerun-if-changed={}", Path::new(&manifest).join(path).display());
            }
        }
        if let Some(branch) = git(&["-C", &manifest, "symbolic-ref", "-q", "HEAD"]) {
            if let Some(path) = git(&["-C", &manifest, "rev-parse", "--git-path", &branch]) {
                println!("cargo:rerun-if-changed={}", Path::new(&manifest).join(path).display());
            }
        }
        git(&["-C", &manifest, "rev-parse", "--short", "HEAD"])
    });
    println!("cargo:rustc-env=BOOTSTRAP_GIT_COMMIT={}", commit.unwrap_or_else(|| "unknown".to_string()));
}

//! Unified diffs of file contents, for `--diff`.

/// A unified diff of two texts, for `--diff`.
pub fn unified_diff(path: &str, old: Option<&[u8]>, new: &[u8]) -> String {
    let old_text = old.map(|o| String::from_utf8_lossy(o).into_owned()).unwrap_or_default();
    let new_text = String::from_utf8_lossy(new).into_owned();
    let diff = similar::TextDiff::from_lines(&old_text, &new_text);
    diff.unified_diff().context_radius(3).header(&format!("{path} (host)"), &format!("{path} (wanted)")).to_string()
}

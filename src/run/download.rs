//! Downloads on the controller, before any connection: small files a plan
//! needs from elsewhere (an apt key from `key_url`).

use std::time::Duration;

/// The most a downloaded key may weigh.
const MAX_BYTES: usize = 1024 * 1024;

/// Download a small file. The error says why, in one line.
pub async fn fetch(url: &str) -> Result<Vec<u8>, String> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| {
        let mut cur: &dyn std::error::Error = &e;
        while let Some(n) = cur.source() {
            cur = n;
        }
        cur.to_string()
    })?;
    if !resp.status().is_success() {
        return Err(format!("HTTP {}", resp.status().as_u16()));
    }
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    if bytes.len() > MAX_BYTES {
        return Err("larger than 1 MiB; not a key".into());
    }
    Ok(bytes.to_vec())
}

//! Secrets that must never appear in the command log, a diagnostics bundle or an error.
//!
//! A secret (vault password, DNS token) is registered once, as soon as it is read; every
//! string the harness prints or stores that may contain it goes through [`redact`].

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The text that replaces a secret.
pub const MASK: &str = "<redacted>";

/// Remember `secret` so that [`redact`] masks it from now on. Short strings are ignored:
/// masking every "a" would make the log unreadable and protect nothing.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 6 {
        return;
    }
    let mut secrets = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret that contains another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let secrets = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// Every string inside `value` (keys too) with every registered secret masked. Structured,
/// not over the rendered text: in rendered JSON a secret holding a quote or a backslash is
/// escaped and would slip past [`redact`].
pub fn redact_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) => *s = redact(s),
        Value::Array(items) => items.iter_mut().for_each(redact_json),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                redact_json(&mut item);
                map.insert(redact(&key), item);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_secrets_inside_json_values_even_with_quotes() {
        register("tok\"en-with-quote");
        let mut value = serde_json::json!({
            "detail": {"env": ["A=tok\"en-with-quote"], "tok\"en-with-quote": 1},
            "n": 3
        });
        redact_json(&mut value);
        let text = value.to_string();
        assert!(!text.contains("en-with-quote"), "{text}");
        assert_eq!(value["detail"]["env"][0], "A=<redacted>");
        assert_eq!(value["detail"]["<redacted>"], 1);
        assert_eq!(value["n"], 3);
    }

    #[test]
    fn masks_registered_secrets_and_ignores_trivial_ones() {
        register("hunter2-token-value");
        register("abc");
        let text = "Authorization: Bearer hunter2-token-value; abc stays";
        assert_eq!(redact(text), "Authorization: Bearer <redacted>; abc stays");
    }

    #[test]
    fn longer_secret_masked_whole_when_it_contains_a_shorter_one() {
        register("s3cr3t-part");
        register("s3cr3t-part-and-more");
        assert_eq!(redact("x s3cr3t-part-and-more y"), "x <redacted> y");
    }
}

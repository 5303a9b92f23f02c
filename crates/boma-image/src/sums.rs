//! Reading and writing `SHA512SUMS` files (`sha512sum` format), as pure text functions.

use std::collections::BTreeMap;

/// Hex digits in a SHA-512 digest.
const HEX_LEN: usize = 128;

/// Why a text is not a usable `SHA512SUMS` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct SumsError {
    /// 1-based line number.
    pub line: usize,
    pub reason: String,
}

/// Parse `sha512sum` output: one `<hex>  <name>` (text mode) or `<hex> *<name>` (binary mode)
/// per line. Returns file name → lowercase hex digest.
///
/// A line that is neither is an error rather than skipped: a page that is not a checksum file
/// (an HTML error page, a proxy's login page) must not read as "no entry for the image".
pub fn parse_sums(text: &str) -> Result<BTreeMap<String, String>, SumsError> {
    let mut sums = BTreeMap::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let err = |reason: &str| SumsError {
            line,
            reason: reason.to_owned(),
        };
        let entry = raw.strip_suffix('\r').unwrap_or(raw);
        if entry.trim().is_empty() {
            continue;
        }
        if entry.starts_with('\\') {
            // sha512sum escapes names holding a backslash or newline; no image name does.
            return Err(err("escaped file names are not supported"));
        }
        let (hex, rest) = entry
            .split_at_checked(HEX_LEN)
            .ok_or_else(|| err(NOT_AN_ENTRY))?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err(NOT_AN_ENTRY));
        }
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| err(NOT_AN_ENTRY))?;
        if name.is_empty() {
            return Err(err("the file name is empty"));
        }
        let hex = hex.to_ascii_lowercase();
        match sums.get(name) {
            Some(previous) if *previous != hex => {
                return Err(err(&format!(
                    "{name} is listed twice with different digests"
                )));
            }
            _ => {
                sums.insert(name.to_owned(), hex);
            }
        }
    }
    Ok(sums)
}

const NOT_AN_ENTRY: &str = "expected `<128 hex digits>  <file name>`";

/// Render entries in `sha512sum` text format, sorted by name, so `sha512sum -c` accepts it.
pub fn render_sums(sums: &BTreeMap<String, String>) -> String {
    sums.iter()
        .map(|(name, hex)| format!("{hex}  {name}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        c.to_string().repeat(HEX_LEN)
    }

    #[test]
    fn text_and_binary_mode_entries_parse() {
        let text = format!(
            "{}  debian-13-genericcloud-amd64.qcow2\n{} *debian-13-genericcloud-amd64.raw\n",
            digest('a'),
            digest('B')
        );
        let sums = parse_sums(&text).unwrap();
        assert_eq!(sums["debian-13-genericcloud-amd64.qcow2"], digest('a'));
        // Digests are normalised to lowercase so they compare with our own hex output.
        assert_eq!(sums["debian-13-genericcloud-amd64.raw"], digest('b'));
        assert_eq!(sums.len(), 2);
    }

    #[test]
    fn blank_lines_and_crlf_are_tolerated() {
        let text = format!("\r\n{}  a.qcow2\r\n\n", digest('0'));
        assert_eq!(parse_sums(&text).unwrap()["a.qcow2"], digest('0'));
        assert!(parse_sums("").unwrap().is_empty());
    }

    #[test]
    fn names_keep_their_spaces() {
        let text = format!("{}  name with  spaces\n", digest('1'));
        assert!(parse_sums(&text).unwrap().contains_key("name with  spaces"));
    }

    #[test]
    fn a_page_that_is_not_a_checksum_file_is_an_error() {
        let err = parse_sums("<html><body>Login required</body></html>\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 1: expected `<128 hex digits>  <file name>`"
        );
    }

    #[test]
    fn malformed_entries_are_errors() {
        let short = format!("{}  a.qcow2", "a".repeat(127));
        let one_space = format!("{} a.qcow2", digest('a'));
        let not_hex = format!("{}  a.qcow2", "g".repeat(HEX_LEN));
        let no_name = format!("{}  ", digest('a'));
        let escaped = format!("\\{}  a\\nb", digest('a'));
        for bad in [short, one_space, not_hex, no_name, escaped] {
            assert!(parse_sums(&bad).is_err(), "accepted {bad:?}");
        }
        let second_line = format!("{}  a\nnonsense\n", digest('a'));
        assert_eq!(parse_sums(&second_line).unwrap_err().line, 2);
    }

    #[test]
    fn conflicting_duplicates_are_errors_but_repeats_are_not() {
        let repeat = format!("{0}  a\n{0}  a\n", digest('a'));
        assert_eq!(parse_sums(&repeat).unwrap().len(), 1);
        let conflict = format!("{}  a\n{}  a\n", digest('a'), digest('b'));
        let err = parse_sums(&conflict).unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: a is listed twice with different digests"
        );
    }

    #[test]
    fn render_round_trips_sorted() {
        let mut sums = BTreeMap::new();
        sums.insert("z.qcow2".to_owned(), digest('f'));
        sums.insert("a.qcow2".to_owned(), digest('0'));
        let text = render_sums(&sums);
        assert!(text.starts_with(&format!("{}  a.qcow2\n", digest('0'))));
        assert_eq!(parse_sums(&text).unwrap(), sums);
    }
}

//! XML 1.0 escaping for text and attribute values, and removal of what XML 1.0 cannot hold.
//!
//! Report text comes from Ansible, curl and the kernel: it may hold markup, `]]>`, colour
//! escapes and other control characters. Everything is escaped rather than wrapped in CDATA,
//! so no sequence in the input can end a section early.

/// `text` made safe as element content.
pub(crate) fn text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in clean(text).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            // `>` is only unsafe after `]]`, but escaping it always is simpler to trust.
            '>' => out.push_str("&gt;"),
            // A raw CR would be folded into a line feed by every parser.
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` made safe inside a double-quoted attribute.
pub(crate) fn attr(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in clean(value).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Attribute-value normalisation turns raw whitespace controls into spaces; the
            // character references survive it.
            '\t' => out.push_str("&#9;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` without terminal control sequences (Ansible colours its output) and without the
/// characters XML 1.0 forbids, which no escape can carry: a document holding one is not
/// well-formed, and a CI server would drop the whole report.
pub(crate) fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            // A CSI sequence: `ESC [`, parameter and intermediate bytes, one final byte.
            chars.next();
            while let Some(&next) = chars.peek() {
                match next {
                    '\u{20}'..='\u{3f}' => {
                        chars.next();
                    }
                    '\u{40}'..='\u{7e}' => {
                        chars.next();
                        break;
                    }
                    _ => break,
                }
            }
            continue;
        }
        if allowed(c) {
            out.push(c);
        }
    }
    out
}

/// XML 1.0's `Char` production. (Rust's `char` already excludes the surrogates.)
fn allowed(c: char) -> bool {
    matches!(c,
        '\t' | '\n' | '\r'
        | '\u{20}'..='\u{d7ff}'
        | '\u{e000}'..='\u{fffd}'
        | '\u{10000}'..='\u{10ffff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_is_escaped_in_text() {
        assert_eq!(
            text("a < b && c > d ]]> \"q\" 'a'"),
            "a &lt; b &amp;&amp; c &gt; d ]]&gt; \"q\" 'a'"
        );
        assert_eq!(text("line\r\nnext\ttab"), "line&#13;\nnext\ttab");
    }

    #[test]
    fn quotes_and_whitespace_controls_are_escaped_in_attributes() {
        assert_eq!(
            attr("a<b>&\"c\" 'd'\n\te\r"),
            "a&lt;b&gt;&amp;&quot;c&quot; &apos;d&apos;&#10;&#9;e&#13;"
        );
    }

    #[test]
    fn forbidden_characters_are_dropped() {
        assert_eq!(clean("a\u{0}b\u{7}c\u{8}d\u{b}\u{c}e\u{1f}f"), "abcdef");
        assert_eq!(clean("\u{fffe}x\u{ffff}"), "x");
        // Allowed, if discouraged: kept.
        assert_eq!(clean("\u{7f}\u{85}é😀\u{fffd}"), "\u{7f}\u{85}é😀\u{fffd}");
    }

    #[test]
    fn terminal_colours_are_removed_whole() {
        assert_eq!(
            clean("\u{1b}[0;31mfatal: [vm]\u{1b}[0m done"),
            "fatal: [vm] done"
        );
        assert_eq!(clean("\u{1b}[1;32;40mok"), "ok");
        // A lone ESC is dropped, and a broken sequence eats nothing past its parameters.
        assert_eq!(clean("a\u{1b}b"), "ab");
        assert_eq!(clean("a\u{1b}[12\u{e9}b"), "a\u{e9}b");
    }
}

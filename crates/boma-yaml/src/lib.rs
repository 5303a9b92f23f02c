//! YAML, both ways. Writing: the one way boma writes a YAML value, as a double-quoted scalar,
//! so that no content can change the structure of the document around it (shared by the
//! renderers of cloud-init's seed and of the transient inventory, both read by PyYAML).
//! Reading: [`untag`], the node under a tag, shared by every reader of Ansible's YAML (the
//! connection-variable scanner, check-tags).

use saphyr::{MarkedYaml, YamlData};

/// The node under a YAML tag (`!unsafe`, `!vault`, a custom one): a tag does not change the
/// structure Ansible sees.
pub fn untag<'a, 'input>(node: &'a MarkedYaml<'input>) -> &'a MarkedYaml<'input> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

/// Writes `value` as a YAML double-quoted scalar that every YAML parser reads back as exactly
/// `value`.
///
/// A JSON string is a valid YAML double-quoted scalar, so `serde_json` escapes `"`, `\` and the
/// C0 controls. cloud-init and Ansible read YAML with PyYAML, a YAML 1.1 parser, which JSON does not fully
/// cover: measured with PyYAML 6.0, a raw NEL inside quotes is folded into a space, and a raw DEL,
/// C1 control or U+FFFE/U+FFFF makes it refuse the whole stream. Those are escaped here as
/// `\uXXXX`, which both YAML versions read, and so are LS/PS (line breaks in YAML 1.1) and the BOM
/// (not allowed inside a document).
pub fn quote(value: &str) -> String {
    let json = serde_json::to_string(value).expect("a str always serialises to JSON");
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04X}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// Characters that JSON leaves raw but that YAML 1.1 (PyYAML) breaks on or rewrites. None of them
/// can occur inside an escape sequence written by `serde_json`, so replacing them one by one in
/// its output is safe.
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{7F}'..='\u{9F}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}' | '\u{FFFE}' | '\u{FFFF}'
    )
}

#[cfg(test)]
mod tests {
    use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

    use super::{quote, untag};

    #[test]
    fn untag_reaches_the_node_under_a_tag_and_leaves_others() {
        let docs = MarkedYaml::load_from_str("a: !vault secret\nb: !unsafe '{{ x }}'\nc: plain\n")
            .unwrap();
        let YamlData::Mapping(map) = &docs[0].data else {
            panic!("not a mapping: {:?}", docs[0].data)
        };
        let values: Vec<_> = map
            .values()
            .map(|v| match &untag(v).data {
                YamlData::Value(Scalar::String(s)) => s.to_string(),
                other => panic!("not a string under the tags: {other:?}"),
            })
            .collect();
        assert_eq!(values, ["secret", "{{ x }}", "plain"]);
    }

    #[test]
    fn plain_text_is_only_wrapped_in_quotes() {
        assert_eq!(quote("ansible"), r#""ansible""#);
    }

    #[test]
    fn json_escapes_quotes_backslashes_and_controls() {
        assert_eq!(quote("a\"b\\c\nd\te\u{1}"), r#""a\"b\\c\nd\te\u0001""#);
    }

    #[test]
    fn yaml_1_1_line_breaks_and_non_printables_are_escaped() {
        assert_eq!(
            quote("\u{85}\u{2028}\u{2029}\u{7F}\u{9F}\u{FEFF}\u{FFFE}"),
            r#""\u0085\u2028\u2029\u007F\u009F\uFEFF\uFFFE""#
        );
    }

    #[test]
    fn other_unicode_stays_raw() {
        assert_eq!(quote("Jambo, dünya 🦒"), "\"Jambo, dünya 🦒\"");
    }
}

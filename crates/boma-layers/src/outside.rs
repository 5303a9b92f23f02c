//! What a file can make Ansible read outside the directories the walk of [`crate::reach`]
//! already takes whole: `{{ role_path }}/…` and `{{ playbook_dir }}/…` paths, the paths of
//! file-reading lookups (`lookup('file', …)`, `template`, `fileglob`, `unvault`), and any path
//! that climbs out with `..`. Pure and lexical: it reads text, not YAML, so it also sees a
//! lookup in a `when:`, a template or a vars file.
//!
//! What it cannot resolve is [`Reference::Doubt`]: an anchor used in an expression, a lookup
//! whose argument is not a literal, a lookup plugin that reads what it likes (`pipe`, `url`,
//! one of a collection). The caller then errs to more.

/// A directory Ansible knows by a magic variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// `role_path`: the directory of the role the file belongs to.
    RolePath,
    /// `playbook_dir`: the directory of the playbook being run.
    PlaybookDir,
    /// `inventory_dir`: the transient inventory, whose variables are the real inventory's.
    InventoryDir,
}

/// One path (or doubt) found in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `{{ role_path }}/files/x`: the anchor's directory, then a literal tail (may be empty,
    /// may climb with `..`).
    Anchored { anchor: Anchor, tail: String },
    /// A relative path a file-reading lookup names: searched where Ansible searches (the
    /// role's and the playbook's directories).
    LookupPath { path: String },
    /// A relative path that climbs out with `..` (a `src:`, an `include_tasks:`, a vars
    /// value): searched the same way; what it does not find is nobody's.
    Climbing { path: String },
    /// An absolute path a lookup reads on the controller: outside the repository.
    Absolute { path: String },
    /// Something whose reach cannot be told from the text.
    Doubt { because: String },
}

/// Lookup plugins that read the controller file their terms name.
const FILE_LOOKUPS: [&str; 4] = ["file", "template", "fileglob", "unvault"];
/// Lookup plugins that read no controller file (or only what is keyed already: the
/// environment Ansible gets, its configuration).
const HARMLESS_LOOKUPS: [&str; 17] = [
    "env",
    "vars",
    "items",
    "list",
    "dict",
    "indexed_items",
    "nested",
    "together",
    "sequence",
    "subelements",
    "random_choice",
    "varnames",
    "config",
    "inventory_hostnames",
    "flattened",
    "cartesian",
    "ansible.utils.index_of",
];
const ANCHORS: [(&str, Option<Anchor>); 4] = [
    ("role_path", Some(Anchor::RolePath)),
    ("playbook_dir", Some(Anchor::PlaybookDir)),
    ("inventory_dir", Some(Anchor::InventoryDir)),
    // The transient inventory's own file: read only through an expression.
    ("inventory_file", None),
];
/// Characters a literal path tail may hold.
fn path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '+' | '@')
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// `ansible.builtin.x` and `ansible.legacy.x` are `x`.
fn plugin_name(name: &str) -> &str {
    name.strip_prefix("ansible.builtin.")
        .or_else(|| name.strip_prefix("ansible.legacy."))
        .unwrap_or(name)
}

/// Every reference in `text`, in order of appearance (duplicates kept).
pub fn references(text: &str) -> Vec<Reference> {
    let mut found = Vec::new();
    anchors(text, &mut found);
    lookups(text, &mut found);
    with_loops(text, &mut found);
    climbing(text, &mut found);
    found
}

/// Byte offsets where `word` occurs as a whole identifier.
fn word_at<'a>(text: &'a str, word: &'a str) -> impl Iterator<Item = usize> + 'a {
    text.match_indices(word).filter_map(move |(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let whole = !before.is_some_and(ident_char) && !after.is_some_and(ident_char);
        // `x.role_path` is an attribute of something else, not the magic variable.
        let attribute = before == Some('.');
        (whole && !attribute).then_some(at)
    })
}

fn anchors(text: &str, found: &mut Vec<Reference>) {
    for (word, anchor) in ANCHORS {
        for at in word_at(text, word) {
            let opens = text[..at].trim_end().ends_with("{{");
            let rest = text[at + word.len()..].trim_start();
            let closes = rest.strip_prefix("}}");
            match (anchor, opens, closes) {
                (Some(anchor), true, Some(after)) => {
                    let tail: String = after.chars().take_while(|c| path_char(*c)).collect();
                    let next = &after[tail.len()..];
                    if next.starts_with("{{") || next.starts_with("{%") {
                        found.push(Reference::Doubt {
                            because: format!("`{{{{ {word} }}}}{tail}` continues with a template"),
                        });
                    } else {
                        found.push(Reference::Anchored { anchor, tail });
                    }
                }
                _ => found.push(Reference::Doubt {
                    because: format!("`{word}` is used in an expression"),
                }),
            }
        }
    }
}

/// A quoted string literal at the start of `text` (after spaces): its content and the rest.
fn literal(text: &str) -> Option<(&str, &str)> {
    let text = text.trim_start();
    let quote = text.chars().next().filter(|c| matches!(c, '\'' | '"'))?;
    let body = &text[1..];
    let end = body.find(quote)?;
    let content = &body[..end];
    // An escape would mean the literal is not what it looks like.
    (!content.contains('\\')).then_some((content, &body[end + 1..]))
}

fn lookups(text: &str, found: &mut Vec<Reference>) {
    for call in ["lookup", "query", "q"] {
        for at in word_at(text, call) {
            let Some(args) = text[at + call.len()..].strip_prefix('(') else {
                continue;
            };
            lookup_call(args, found);
        }
    }
}

/// The arguments of one `lookup(` (text after the parenthesis).
fn lookup_call(args: &str, found: &mut Vec<Reference>) {
    let Some((name, mut rest)) = literal(args) else {
        found.push(Reference::Doubt {
            because: "a lookup names its plugin through an expression".to_owned(),
        });
        return;
    };
    let plugin = plugin_name(name);
    if HARMLESS_LOOKUPS.contains(&plugin) {
        return;
    }
    if !FILE_LOOKUPS.contains(&plugin) {
        found.push(Reference::Doubt {
            because: format!("lookup `{name}` may read anything on the controller"),
        });
        return;
    }
    // Positional terms, each a literal; keyword arguments after them are options. All or
    // nothing: one term that is an expression puts the whole call in doubt.
    let mut paths = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.starts_with(')') {
            break;
        }
        let Some(after_comma) = rest.strip_prefix(',') else {
            found.push(Reference::Doubt {
                because: format!("a `{name}` lookup's terms are an expression"),
            });
            return;
        };
        let after_comma = after_comma.trim_start();
        let keyword = after_comma
            .split_once('=')
            .is_some_and(|(k, _)| !k.is_empty() && k.chars().all(ident_char));
        if keyword {
            break;
        }
        let Some((term, after)) = literal(after_comma) else {
            found.push(Reference::Doubt {
                because: format!("a `{name}` lookup's term is an expression"),
            });
            return;
        };
        if term.contains("{{") || term.contains("{%") {
            found.push(Reference::Doubt {
                because: format!("a `{name}` lookup's term `{term}` is templated"),
            });
            return;
        }
        // A glob reads what matches in its directory: the directory up to the first wildcard.
        let path: String = if plugin == "fileglob" {
            let mut kept = Vec::new();
            for part in term.split('/') {
                if part.contains(['*', '?', '[']) {
                    break;
                }
                kept.push(part);
            }
            kept.join("/")
        } else {
            term.to_owned()
        };
        if path.starts_with('/') {
            paths.push(Reference::Absolute { path });
        } else if !path.is_empty() {
            paths.push(Reference::LookupPath { path });
        }
        rest = after;
    }
    found.extend(paths);
}

/// `with_<lookup>:` loops run a lookup on their (YAML) terms.
fn with_loops(text: &str, found: &mut Vec<Reference>) {
    for (at, _) in text.match_indices("with_") {
        if text[..at].chars().next_back().is_some_and(ident_char) {
            continue;
        }
        let name: String = text[at + 5..]
            .chars()
            .take_while(|c| ident_char(*c) || *c == '.')
            .collect();
        if !text[at + 5 + name.len()..].trim_start().starts_with(':') {
            continue;
        }
        if !HARMLESS_LOOKUPS.contains(&plugin_name(&name)) {
            found.push(Reference::Doubt {
                because: format!("`with_{name}` runs the `{name}` lookup on its terms"),
            });
        }
    }
}

/// Relative paths with a `..` component.
fn climbing(text: &str, found: &mut Vec<Reference>) {
    let delimiter = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '\'' | '"' | ',' | '=' | '(' | ')' | '[' | ']' | '{' | '}' | '|' | ';' | ':'
            )
    };
    for token in text.split(delimiter) {
        if token.starts_with('/') || !token.split('/').any(|part| part == "..") {
            continue;
        }
        found.push(Reference::Climbing {
            path: token.to_owned(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchored(anchor: Anchor, tail: &str) -> Reference {
        Reference::Anchored {
            anchor,
            tail: tail.to_owned(),
        }
    }

    #[test]
    fn anchors_with_literal_tails_resolve_and_other_uses_are_in_doubt() {
        let text = concat!(
            "src: \"{{ role_path }}/../common/files/motd\"\n",
            "dest: \"{{playbook_dir}}/files/x.conf\"\n",
            "vars: \"{{ inventory_dir }}\"\n",
            "when: role_path is defined\n",
            "x: \"{{ playbook_dir }}/{{ name }}\"\n",
            "y: \"{{ my.role_path }}\"\n",
        );
        let refs = references(text);
        assert_eq!(
            refs[..3],
            [
                anchored(Anchor::RolePath, "/../common/files/motd"),
                Reference::Doubt {
                    because: "`role_path` is used in an expression".into()
                },
                anchored(Anchor::PlaybookDir, "/files/x.conf"),
            ]
        );
        assert!(refs.contains(&Reference::Doubt {
            because: "`{{ playbook_dir }}/` continues with a template".into()
        }));
        assert!(refs.contains(&anchored(Anchor::InventoryDir, "")));
        // `my.role_path` is some variable's attribute, not the magic variable.
        assert_eq!(
            refs.iter()
                .filter(|r| matches!(r, Reference::Anchored { .. } | Reference::Doubt { .. }))
                .count(),
            5,
            "{refs:?}"
        );
    }

    #[test]
    fn file_lookups_with_literal_terms_name_paths() {
        let text = concat!(
            "a: \"{{ lookup('file', 'keys/id.pub') }}\"\n",
            "b: \"{{ lookup(\"ansible.builtin.template\", '../common/t.j2', convert_data=False) }}\"\n",
            "c: \"{{ query('fileglob', 'conf.d/*.conf') }}\"\n",
            "d: \"{{ lookup('file', '/etc/hostname') }}\"\n",
            "e: \"{{ lookup('env', 'HOME') }}\"\n",
            "when: q('file', 'a', 'b') | length > 0\n",
        );
        assert_eq!(
            references(text),
            [
                Reference::LookupPath {
                    path: "keys/id.pub".into()
                },
                Reference::LookupPath {
                    path: "../common/t.j2".into()
                },
                Reference::Absolute {
                    path: "/etc/hostname".into()
                },
                Reference::LookupPath {
                    path: "conf.d".into()
                },
                Reference::LookupPath { path: "a".into() },
                Reference::LookupPath { path: "b".into() },
                Reference::Climbing {
                    path: "../common/t.j2".into()
                },
            ]
        );
    }

    #[test]
    fn lookups_that_cannot_be_resolved_are_in_doubt() {
        for (text, because) in [
            (
                "{{ lookup('file', my_file) }}",
                "a `file` lookup's term is an expression",
            ),
            (
                "{{ lookup('file', 'a' ~ b) }}",
                "a `file` lookup's terms are an expression",
            ),
            (
                "{{ lookup('template', '{{ x }}.j2') }}",
                "a `template` lookup's term `{{ x }}.j2` is templated",
            ),
            (
                "{{ lookup('pipe', 'cat /etc/x') }}",
                "lookup `pipe` may read anything on the controller",
            ),
            (
                "{{ lookup(plugin, 'x') }}",
                "a lookup names its plugin through an expression",
            ),
            (
                "  with_fileglob:\n    - files/*\n",
                "`with_fileglob` runs the `fileglob` lookup on its terms",
            ),
        ] {
            assert_eq!(
                references(text),
                [Reference::Doubt {
                    because: because.into()
                }],
                "{text}"
            );
        }
        assert!(references("loop: \"{{ x }}\"\nwith_items: [1]\nwith_dict: {}\n").is_empty());
    }

    #[test]
    fn climbing_paths_are_found_and_absolute_or_plain_ones_are_not() {
        let text = "- include_tasks: ../../common/tasks/x.yml\n  dest: /etc/../x\n  src: a.j2\n  cmd: cd .. && make\n";
        assert_eq!(
            references(text),
            [
                Reference::Climbing {
                    path: "../../common/tasks/x.yml".into()
                },
                Reference::Climbing { path: "..".into() },
            ]
        );
    }
}

//! INI inventory files, read as ansible-core's `ini` inventory plugin reads them:
//!
//! - each line is stripped; empty lines and lines starting with `#` or `;` are skipped;
//! - `[group]`, `[group:hosts]`, `[group:children]`, `[group:vars]` open a section (a trailing
//!   `# comment` is allowed); any other `[...]` line is an error; lines before the first section
//!   are hosts of `ungrouped`;
//! - in a hosts section, a line is split like a POSIX shell would (Python's
//!   `shlex.split(line, comments=True)`): the first word is a host pattern (`web[01:03]`,
//!   `askari:2222`), the others must be `key=value`;
//! - in a `:vars` section a line is `key=value`, split at the first `=`;
//! - in a `:children` section a line is one group name.
//!
//! What the harness takes from a file is its hosts (every name a pattern expands to), each
//! host's `ansible_host` and `ansible_connection=local`, a group's `ansible_host`, and the groups
//! a `:children` section makes children of its group. Values are read as Ansible reads them,
//! through Python's `ast.literal_eval`: a quoted string loses its quotes, an unquoted word that
//! is no Python literal stays as written, and an `ansible_host` that would become a number, a
//! list or another non-string is refused rather than guessed.
//!
//! Errors Ansible raises for a line are errors here too (the harness never skips what it cannot
//! read). Ansible's checks that refer to groups across the file (`[g:vars]` for an undeclared
//! group) are not repeated: they hide no host.

use super::{Fleet, InventoryError, expand_host_pattern};

/// Characters Python's `shlex` splits on.
const SHLEX_WHITESPACE: [char; 4] = [' ', '\t', '\r', '\n'];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Hosts,
    Children,
    Vars,
}

/// The hosts of one INI inventory file, with their `ansible_host`; `file` is how errors name it.
pub fn ini_fleet(file: &str, text: &str) -> Result<Fleet, InventoryError> {
    let mut fleet = Fleet::default();
    let mut group = "ungrouped".to_owned();
    let mut section = Section::Hosts;
    for (index, raw) in text.lines().enumerate() {
        let line_no = index + 1;
        let err = |message: String| InventoryError::Ini {
            file: file.to_owned(),
            line: line_no,
            message,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with(['#', ';']) {
            continue;
        }
        if let Some((name, kind)) = section_header(line) {
            section = match kind {
                None | Some("hosts") => Section::Hosts,
                Some("children") => Section::Children,
                Some("vars") => Section::Vars,
                Some(other) => {
                    return Err(err(format!(
                        "section [{name}:{other}] has unknown type `{other}`: use hosts, children or vars"
                    )));
                }
            };
            group = name.to_owned();
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') {
            return Err(err(format!(
                "invalid section `{line}`: write [group], [group:children] or [group:vars], without spaces"
            )));
        }
        match section {
            Section::Hosts => host_line(&mut fleet, file, line_no, line).map_err(err)?,
            Section::Vars => {
                let (key, value) = line
                    .split_once('=')
                    .ok_or_else(|| err(format!("expected key=value, got `{line}`")))?;
                if key.trim() == "ansible_host" {
                    let value = literal_string(value.trim()).ok_or_else(|| {
                        err(format!(
                            "the `ansible_host` of group `{group}` must be a plain address or name"
                        ))
                    })?;
                    fleet.add_group_host(&group, value);
                }
            }
            Section::Children => {
                let child = group_name(line)
                    .ok_or_else(|| err(format!("expected a group name, got `{line}`")))?;
                fleet.add_child(&group, child);
            }
        }
    }
    Ok(fleet)
}

/// One line of a hosts section: its pattern's hosts, with the vars that matter here.
fn host_line(fleet: &mut Fleet, file: &str, line_no: usize, line: &str) -> Result<(), String> {
    let words = shlex_split(line).map_err(|e| format!("cannot split `{line}`: {e}"))?;
    let Some((pattern, vars)) = words.split_first() else {
        return Ok(());
    };
    if pattern.is_empty() {
        return Err(format!("empty host name in `{line}`"));
    }
    if pattern.trim() == "---" {
        return Err(
            "`---` is a YAML document marker: is this a YAML file named as INI?".to_owned(),
        );
    }
    // A trailing `:` is reserved for a port (Ansible's own INI check).
    if pattern.trim_end().ends_with(':') {
        return Err(format!(
            "invalid host pattern `{pattern}`: a trailing `:` must be followed by a port"
        ));
    }
    let names = expand_host_pattern(pattern).map_err(|e| format!("host `{pattern}`: {e}"))?;
    let mut given = None;
    let mut local = false;
    for var in vars {
        let (key, value) = var
            .split_once('=')
            .ok_or_else(|| format!("expected key=value host variable assignment, got `{var}`"))?;
        match key {
            "ansible_host" => {
                let host = literal_string(value).ok_or_else(|| {
                    format!(
                        "the `ansible_host` of host `{pattern}` must be a plain address or name"
                    )
                })?;
                given = Some(host.to_owned());
            }
            "ansible_connection" => local = literal_string(value) == Some("local"),
            _ => {}
        }
    }
    let at = format!("{file}:{line_no}");
    for name in names {
        fleet.add_host(name, at.clone(), given.as_deref(), local);
    }
    Ok(())
}

/// `[name]` or `[name:kind]`, with optional trailing whitespace and `# comment`: Ansible's
/// section pattern `^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:\#.*)?$`.
fn section_header(line: &str) -> Option<(&str, Option<&str>)> {
    let rest = line.strip_prefix('[')?;
    let name_end = rest
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(rest.len());
    let (name, mut rest) = rest.split_at(name_end);
    if name.is_empty() {
        return None;
    }
    let mut kind = None;
    if let Some(after) = rest.strip_prefix(':') {
        let kind_end = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if kind_end == 0 {
            return None;
        }
        kind = Some(&after[..kind_end]);
        rest = &after[kind_end..];
    }
    let tail = rest.strip_prefix(']')?.trim_start();
    (tail.is_empty() || tail.starts_with('#')).then_some((name, kind))
}

/// A `:children` line: one group name (no `:`, `]` or whitespace), then optionally `# comment`.
fn group_name(line: &str) -> Option<&str> {
    let end = line
        .find(|c: char| c == ':' || c == ']' || c.is_whitespace())
        .unwrap_or(line.len());
    let (name, tail) = line.split_at(end);
    let tail = tail.trim_start();
    (!name.is_empty() && (tail.is_empty() || tail.starts_with('#'))).then_some(name)
}

/// Split `line` like Python's `shlex.split(line, comments=True)` (POSIX mode): words separated
/// by spaces, tabs or newlines; `'…'` literal; `"…"` where `\` escapes only `"` and `\`; `\`
/// outside quotes escapes any character; `#` outside quotes ends the line.
fn shlex_split(line: &str) -> Result<Vec<String>, &'static str> {
    enum State {
        Between,
        Word,
        Quoted(char),
        Escaped { inside: Option<char> },
    }
    let mut words = Vec::new();
    let mut word = String::new();
    // A word made only of quotes (`''`) is still a word.
    let mut started = false;
    let mut state = State::Between;
    for c in line.chars() {
        state = match state {
            State::Between | State::Word if SHLEX_WHITESPACE.contains(&c) => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
                State::Between
            }
            State::Between | State::Word if c == '#' => break,
            State::Between | State::Word => {
                started = true;
                match c {
                    '\'' | '"' => State::Quoted(c),
                    '\\' => State::Escaped { inside: None },
                    _ => {
                        word.push(c);
                        State::Word
                    }
                }
            }
            State::Quoted(quote) if c == quote => State::Word,
            State::Quoted('"') if c == '\\' => State::Escaped { inside: Some('"') },
            State::Quoted(quote) => {
                word.push(c);
                State::Quoted(quote)
            }
            State::Escaped { inside } => {
                // Inside double quotes a backslash escapes only `"` and `\`.
                if inside.is_some() && c != '"' && c != '\\' {
                    word.push('\\');
                }
                word.push(c);
                inside.map_or(State::Word, State::Quoted)
            }
        };
    }
    match state {
        State::Quoted(_) => Err("no closing quotation"),
        State::Escaped { .. } => Err("no escaped character"),
        State::Between | State::Word => {
            if started {
                words.push(word);
            }
            Ok(words)
        }
    }
}

/// A value as Ansible's INI plugin takes it (`ast.literal_eval`, else the text itself), when
/// that is a string: `'x'` or `"x"` without escapes → `x`; a word that is no Python literal →
/// itself. `None` for what Python reads as another type (a number, `True`, a list…) or as a
/// string only through escapes or concatenation: not worth guessing for an address.
fn literal_string(value: &str) -> Option<&str> {
    for quote in ['\'', '"'] {
        if value.len() >= 2 && value.starts_with(quote) && value.ends_with(quote) {
            let inner = &value[1..value.len() - 1];
            return (!inner.contains([quote, '\\'])).then_some(inner);
        }
    }
    let python_literal = is_python_number(value)
        || matches!(value, "True" | "False" | "None")
        || value.starts_with(['[', '(', '{'])
        || value.contains(['\'', '"']);
    (!python_literal).then_some(value)
}

/// Whether Python reads `text` as a number literal (optionally signed, imaginary): decimal,
/// `0x`/`0o`/`0b` integers, floats with `.` or an exponent, `_` between digits.
fn is_python_number(text: &str) -> bool {
    let digits = |t: &str, radix: u32| {
        !t.is_empty()
            && !t.starts_with('_')
            && !t.ends_with('_')
            && !t.contains("__")
            && t.chars().all(|c| c == '_' || c.is_digit(radix))
    };
    let t = text.strip_prefix(['+', '-']).unwrap_or(text);
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if t.len() > 2 && t[..2].eq_ignore_ascii_case(prefix) {
            return digits(&t[2..], radix);
        }
    }
    let t = t.strip_suffix(['j', 'J']).unwrap_or(t);
    let (mantissa, exponent) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], Some(&t[i + 1..])),
        None => (t, None),
    };
    if let Some(exponent) = exponent {
        let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        if !digits(exponent, 10) {
            return false;
        }
    }
    match mantissa.split_once('.') {
        Some((int, frac)) => {
            (int.is_empty() || digits(int, 10))
                && (frac.is_empty() || digits(frac, 10))
                && !(int.is_empty() && frac.is_empty())
        }
        // `010` is a syntax error in Python 3 (a string to Ansible); `00` is zero.
        None if exponent.is_none() && mantissa.starts_with('0') => {
            digits(mantissa, 10) && mantissa.chars().all(|c| c == '0' || c == '_')
        }
        None => digits(mantissa, 10),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Vec<String> {
        shlex_split(line).unwrap()
    }

    #[test]
    fn lines_split_like_python_shlex() {
        assert_eq!(split("a b=1  c='x y'"), ["a", "b=1", "c=x y"]);
        assert_eq!(split("h v=\"a\\\"b\\\\c\\d\""), ["h", "v=a\"b\\c\\d"]);
        assert_eq!(split("h v=a\\ b"), ["h", "v=a b"]);
        assert_eq!(split("h v=ab#c d"), ["h", "v=ab"]);
        assert_eq!(split("h # v=1"), ["h"]);
        assert_eq!(split("h v='#x'"), ["h", "v=#x"]);
        assert_eq!(split("h v=''"), ["h", "v="]);
        assert_eq!(split("h ''"), ["h", ""]);
        assert_eq!(split("h\tv=1"), ["h", "v=1"]);
        assert_eq!(shlex_split("h v='x"), Err("no closing quotation"));
        assert_eq!(shlex_split("h v=x\\"), Err("no escaped character"));
    }

    #[test]
    fn values_are_strings_only_where_python_says_so() {
        assert_eq!(literal_string("192.0.2.50"), Some("192.0.2.50"));
        assert_eq!(literal_string("'192.0.2.50'"), Some("192.0.2.50"));
        assert_eq!(
            literal_string("\"kiboko.example.net\""),
            Some("kiboko.example.net")
        );
        assert_eq!(literal_string("2001:db8::7"), Some("2001:db8::7"));
        assert_eq!(literal_string("db01"), Some("db01"));
        assert_eq!(literal_string("cafe"), Some("cafe"));
        assert_eq!(literal_string("010"), Some("010"));
        assert_eq!(literal_string("local"), Some("local"));
        for not_a_string in [
            "10", "-1", "1.5", ".5", "1e3", "0x1F", "0o17", "0b101", "1_000", "3j", "00", "True",
            "None", "[1]", "{'a': 1}", "'a\\'b'", "\"a\"'b'",
        ] {
            assert_eq!(literal_string(not_a_string), None, "{not_a_string}");
        }
    }

    #[test]
    fn section_headers() {
        assert_eq!(section_header("[web]"), Some(("web", None)));
        assert_eq!(
            section_header("[web:vars]  # x"),
            Some(("web", Some("vars")))
        );
        assert_eq!(section_header("[web:bogus]"), Some(("web", Some("bogus"))));
        for not_header in ["[web", "[ web]", "[web] x", "[web:]", "[]", "[a b]"] {
            assert_eq!(section_header(not_header), None, "{not_header}");
        }
    }

    const REALISTIC: &str = "\
# Production inventory, INI style (an operator's hosts.ini)
mlinzi.example.net

[offsite_hosts]
askari ansible_host=77.42.120.136 ansible_user=admin   # the VPS
kiboko ansible_host='192.0.2.50' ansible_port=2222

[home_hosts]
twiga:2222 ansible_host=\"198.51.100.4\"
nas[01:03] ansible_host=nas.lan
db-[a:b]

[control]
ubongo ansible_connection=local

[docker_hosts:children]
offsite_hosts   # askari runs Docker
home_hosts

[home_hosts:vars]
ansible_become=true
http_port = 8080

[all:vars]
ansible_python_interpreter=/usr/bin/python3
";

    #[test]
    fn a_realistic_file_reads_every_host_and_address() {
        let fleet = ini_fleet("hosts.ini", REALISTIC).unwrap();
        assert_eq!(
            fleet.names().into_iter().collect::<Vec<_>>(),
            [
                "askari",
                "db-a",
                "db-b",
                "kiboko",
                "mlinzi.example.net",
                "nas01",
                "nas02",
                "nas03",
                "twiga",
                "ubongo"
            ]
        );
        let addresses: Vec<String> = fleet.addresses().iter().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["77.42.120.136", "192.0.2.50", "198.51.100.4"]);
        assert_eq!(
            fleet.named_only(),
            [
                ("db-a".to_owned(), "db-a".to_owned()),
                ("db-b".to_owned(), "db-b".to_owned()),
                (
                    "mlinzi.example.net".to_owned(),
                    "mlinzi.example.net".to_owned()
                ),
                ("nas01".to_owned(), "nas.lan".to_owned()),
                ("nas02".to_owned(), "nas.lan".to_owned()),
                ("nas03".to_owned(), "nas.lan".to_owned()),
            ]
        );
        assert_eq!(fleet.defined_at["kiboko"], "hosts.ini:6");
    }

    #[test]
    fn lines_ansible_rejects_are_errors_naming_file_and_line() {
        let err = |text: &str| {
            ini_fleet("inventories/production/hosts", text)
                .unwrap_err()
                .to_string()
        };
        // `;` starts a comment only at the start of a line: on a host line shlex makes it a word.
        assert_eq!(
            err("# hosts\nmlinzi ; ungrouped\n"),
            "inventories/production/hosts:2: expected key=value host variable assignment, got `;`"
        );
        assert_eq!(
            err("[web]\nw1 prod\n"),
            "inventories/production/hosts:2: expected key=value host variable assignment, got `prod`"
        );
        assert_eq!(
            err("[web:hostz]\n"),
            "inventories/production/hosts:1: section [web:hostz] has unknown type `hostz`: use hosts, children or vars"
        );
        assert!(err("[web servers]\n").contains("invalid section `[web servers]`"));
        assert!(err("[web:vars]\njust_a_word\n").contains(":2: expected key=value"));
        assert!(err("[g:children]\na b\n").contains("expected a group name"));
        assert!(err("w1 x='unclosed\n").contains("no closing quotation"));
        assert!(err("all:\n  hosts:\n").contains("a trailing `:` must be followed by a port"));
        assert!(err("---\n").contains("YAML document marker"));
        assert!(err("web[3:1]\n").contains("host `web[3:1]`"));
        assert!(err("w1 ansible_host=10\n").contains("must be a plain address or name"));
        assert!(err("[w:vars]\nansible_host=[1]\n").contains("of group `w`"));
    }
}

//! Reads `nft list ruleset` text into a [`Ruleset`] with what changes at runtime stripped:
//! rule handles, counter values, quota usage, `last used` times and the contents of named
//! sets, maps and stateful objects.
//!
//! The text form is read rather than `nft -j`: its rules are one line each, so a rule compares
//! and reads as what an operator would write (`iifname "docker0" accept`).

use crate::model::{BaseChain, Chain, Ruleset, Table};

/// Where the parser stands in the ruleset text. Each state carries exactly what it needs, so
/// a rule outside a chain or a chain outside a table cannot be represented.
enum Position {
    /// Between tables.
    Top,
    /// Inside `table <family> <name> {`, by its key in [`Ruleset::tables`].
    Table(String),
    Chain(ChainAt),
    /// A rule whose braces did not close on its line, with its text so far.
    Rule(ChainAt, String),
    /// Inside a block whose contents are skipped (a set's elements, a named counter, a chain's
    /// device list), `depth` open braces deep.
    Skip {
        depth: i64,
        back: Back,
    },
}

/// A chain by its table's key and its name.
struct ChainAt {
    table: String,
    chain: String,
}

/// Where a skipped block returns to when it closes.
enum Back {
    Table(String),
    Chain(ChainAt),
}

impl Back {
    /// Skips a block that opened `depth` braces on its line; one that closed on it is done.
    fn skip(self, depth: i64) -> Position {
        if depth > 0 {
            Position::Skip { depth, back: self }
        } else {
            self.resume()
        }
    }

    fn resume(self) -> Position {
        match self {
            Back::Table(table) => Position::Table(table),
            Back::Chain(at) => Position::Chain(at),
        }
    }
}

/// Parses the ruleset; the error names the line nft printed that this parser does not know.
pub(crate) fn parse_ruleset(text: &str) -> Result<Ruleset, String> {
    let mut ruleset = Ruleset::default();
    let mut at = Position::Top;
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let unknown = || format!("line {}: unexpected {:?}", index + 1, raw.trim());
        at = match at {
            Position::Skip { depth, back } => back.skip(depth + brace_balance(line)),
            Position::Rule(chain, mut rule) => {
                rule.push(' ');
                rule.push_str(line);
                if brace_balance(&rule) <= 0 {
                    push_rule(&mut ruleset, &chain, &rule);
                    Position::Chain(chain)
                } else {
                    Position::Rule(chain, rule)
                }
            }
            Position::Top => {
                let header = line
                    .strip_prefix("table ")
                    .and_then(|rest| rest.strip_suffix('{'))
                    .ok_or_else(unknown)?;
                let key = header.split_whitespace().collect::<Vec<_>>().join(" ");
                ruleset.tables.entry(key.clone()).or_default();
                Position::Table(key)
            }
            Position::Table(table) => {
                if line == "}" {
                    Position::Top
                } else if let Some(name) = line
                    .strip_prefix("chain ")
                    .and_then(|rest| rest.strip_suffix('{'))
                {
                    let chain = ChainAt {
                        table,
                        chain: name.trim().to_owned(),
                    };
                    chain_mut(&mut ruleset, &chain);
                    Position::Chain(chain)
                } else if let Some(object) = line.strip_suffix('{') {
                    let object = object.split_whitespace().collect::<Vec<_>>().join(" ");
                    table_mut(&mut ruleset, &table).objects.insert(object);
                    Back::Table(table).skip(brace_balance(line))
                } else {
                    // A table attribute (`flags dormant`, `comment "…"`).
                    Position::Table(table)
                }
            }
            Position::Chain(chain) => {
                if line == "}" {
                    Position::Table(chain.table)
                } else if line.starts_with("type ") || line.starts_with("policy ") {
                    read_base_chain(line, chain_mut(&mut ruleset, &chain)).ok_or_else(unknown)?;
                    Position::Chain(chain)
                } else if line.starts_with("comment ") || line.starts_with("devices ") {
                    // Chain attributes; a device list may span lines.
                    Back::Chain(chain).skip(brace_balance(line))
                } else if brace_balance(line) > 0 {
                    Position::Rule(chain, line.to_owned())
                } else {
                    push_rule(&mut ruleset, &chain, line);
                    Position::Chain(chain)
                }
            }
        };
    }
    if !matches!(at, Position::Top) {
        return Err("the ruleset ends inside a block".to_owned());
    }
    for table in ruleset.tables.values_mut() {
        for chain in table.chains.values_mut() {
            chain.rules.sort();
        }
    }
    Ok(ruleset)
}

fn table_mut<'a>(ruleset: &'a mut Ruleset, table: &str) -> &'a mut Table {
    ruleset.tables.entry(table.to_owned()).or_default()
}

fn chain_mut<'a>(ruleset: &'a mut Ruleset, at: &ChainAt) -> &'a mut Chain {
    table_mut(ruleset, &at.table)
        .chains
        .entry(at.chain.clone())
        .or_default()
}

fn push_rule(ruleset: &mut Ruleset, at: &ChainAt, rule: &str) {
    chain_mut(ruleset, at).rules.push(normalise_rule(rule));
}

/// Reads `type filter hook forward priority filter; policy drop;` into the chain.
fn read_base_chain(line: &str, chain: &mut Chain) -> Option<()> {
    for part in line.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let words: Vec<&str> = part.split_whitespace().collect();
        match words.as_slice() {
            ["policy", policy] => {
                chain.base.as_mut()?.policy = Some((*policy).to_owned());
            }
            ["type", kind, rest @ ..] => {
                let priority_at = rest.iter().position(|w| *w == "priority")?;
                let (hook, priority) = rest.split_at(priority_at);
                let hook = hook.strip_prefix(&["hook"])?;
                chain.base = Some(BaseChain {
                    kind: (*kind).to_owned(),
                    hook: hook.join(" "),
                    priority: priority[1..].join(" "),
                    policy: None,
                });
            }
            _ => return None,
        }
    }
    Some(())
}

/// One rule as compared: whitespace collapsed, handles gone, runtime values dropped.
pub(crate) fn normalise_rule(rule: &str) -> String {
    let words: Vec<&str> = strip_comment(rule).split_whitespace().collect();
    let mut kept = Vec::with_capacity(words.len());
    let mut i = 0;
    while i < words.len() {
        match &words[i..] {
            // `counter packets 12 bytes 3456`: keep that the rule counts, not what.
            ["counter", "packets", _, "bytes", _, ..] => {
                kept.push("counter");
                i += 5;
            }
            // `quota over 10 mbytes used 2 mbytes`: the usage grows.
            ["used", _, _, ..] if kept.contains(&"quota") => i += 3,
            // `last used 3s ago` / `last used never`.
            ["last", "used", "never", ..] => {
                kept.push("last");
                i += 3;
            }
            ["last", "used", ..] => {
                kept.push("last");
                i += 2;
                while i < words.len() && words[i] != "ago" {
                    i += 1;
                }
                i += 1;
            }
            _ => {
                kept.push(words[i]);
                i += 1;
            }
        }
    }
    kept.join(" ")
}

/// Cuts a `# …` comment (nft's `# handle 7`, iptables-nft's warnings) that is not inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    let mut previous = ' ';
    for (at, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted && previous.is_whitespace() => return &line[..at],
            _ => {}
        }
        previous = c;
    }
    line
}

/// `{` minus `}` outside quotes.
fn brace_balance(text: &str) -> i64 {
    let mut quoted = false;
    let mut balance = 0;
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '{' if !quoted => balance += 1,
            '}' if !quoted => balance -= 1,
            _ => {}
        }
    }
    balance
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULESET: &str = r#"# Warning: table ip nat is managed by iptables-nft, do not touch!
table ip nat {
	chain DOCKER {
		iifname "docker0" counter packets 0 bytes 0 return # handle 7
		iifname != "docker0" meta l4proto tcp tcp dport 443 counter packets 12 bytes 720 dnat to 172.18.0.2:443
	}

	chain PREROUTING {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local counter packets 3 bytes 180 jump DOCKER
	}
}
table inet filter {
	set blocklist {
		type ipv4_addr
		flags dynamic,timeout
		elements = { 192.0.2.1 expires 59s, 192.0.2.2 expires 12s,
			     192.0.2.3 expires 1s }
	}

	counter seen {
		packets 4 bytes 240
	}

	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		tcp dport { 22, 443 } accept
		ip saddr @blocklist quota over 10 mbytes used 2 mbytes drop
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
"#;

    #[test]
    fn reads_tables_chains_and_base_chain_properties() {
        let ruleset = parse_ruleset(RULESET).unwrap();
        let keys: Vec<_> = ruleset.tables.keys().cloned().collect();
        assert_eq!(keys, ["inet filter", "ip nat"]);
        let filter = &ruleset.tables["inet filter"];
        let forward = &filter.chains["forward"];
        assert_eq!(
            forward.base,
            Some(BaseChain {
                kind: "filter".to_owned(),
                hook: "forward".to_owned(),
                priority: "filter".to_owned(),
                policy: Some("drop".to_owned()),
            })
        );
        assert!(forward.rules.is_empty());
        assert_eq!(ruleset.tables["ip nat"].chains["DOCKER"].base, None);
    }

    #[test]
    fn strips_handles_counters_quota_usage_and_set_elements() {
        let ruleset = parse_ruleset(RULESET).unwrap();
        let filter = &ruleset.tables["inet filter"];
        assert_eq!(
            filter.objects.iter().collect::<Vec<_>>(),
            ["counter seen", "set blocklist"]
        );
        assert_eq!(
            filter.chains["input"].rules,
            [
                "ct state established,related accept",
                "ip saddr @blocklist quota over 10 mbytes drop",
                "tcp dport { 22, 443 } accept",
            ]
        );
        assert_eq!(
            ruleset.tables["ip nat"].chains["DOCKER"].rules,
            [
                "iifname != \"docker0\" meta l4proto tcp tcp dport 443 counter dnat to 172.18.0.2:443",
                "iifname \"docker0\" counter return",
            ]
        );
    }

    #[test]
    fn a_rule_differing_only_in_counters_and_handle_is_the_same_rule() {
        assert_eq!(
            normalise_rule("iifname \"docker0\"  counter packets 0 bytes 0 accept # handle 3"),
            normalise_rule("iifname \"docker0\" counter packets 981 bytes 1234567 accept"),
        );
        assert_eq!(
            normalise_rule("tcp dport 22 last used 5s ago accept"),
            normalise_rule("tcp dport 22 last used never accept"),
        );
        assert_ne!(
            normalise_rule("tcp dport 22 counter packets 0 bytes 0 accept"),
            normalise_rule("tcp dport 22 counter packets 0 bytes 0 drop"),
        );
    }

    #[test]
    fn a_hash_inside_quotes_is_not_a_comment() {
        assert_eq!(
            normalise_rule(r#"tcp dport 80 accept comment "web # main""#),
            r#"tcp dport 80 accept comment "web # main""#
        );
    }

    #[test]
    fn a_rule_whose_braces_span_lines_is_read_whole() {
        let text = "table inet edge {
\tchain allow {
\t\tip saddr { 192.0.2.1, 192.0.2.2,
\t\t\t     192.0.2.3 } accept
\t\tdrop
\t}
}
";
        let ruleset = parse_ruleset(text).unwrap();
        assert_eq!(
            ruleset.tables["inet edge"].chains["allow"].rules,
            [
                "drop",
                "ip saddr { 192.0.2.1, 192.0.2.2, 192.0.2.3 } accept"
            ]
        );
    }

    #[test]
    fn an_empty_ruleset_has_no_tables() {
        assert_eq!(parse_ruleset("").unwrap(), Ruleset::default());
    }

    #[test]
    fn text_that_is_not_a_ruleset_is_refused() {
        let err = parse_ruleset("Error: Could not process rule\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = parse_ruleset("table inet filter {\n\tchain input {\n").unwrap_err();
        assert!(err.contains("ends inside"), "{err}");
    }
}

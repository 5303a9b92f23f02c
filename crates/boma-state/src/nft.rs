//! Reads `nft list ruleset` text into a [`Ruleset`] with what changes at runtime stripped:
//! rule handles, counter values, quota usage, `last used` times and the contents of named
//! sets, maps and stateful objects.
//!
//! The text form is read rather than `nft -j`: its rules are one line each, so a rule compares
//! and reads as what an operator would write (`iifname "docker0" accept`).

use crate::model::{BaseChain, Chain, Ruleset, Table};

/// Parses the ruleset; the error names the line nft printed that this parser does not know.
pub(crate) fn parse_ruleset(text: &str) -> Result<Ruleset, String> {
    let mut ruleset = Ruleset::default();
    let mut table: Option<String> = None;
    let mut chain: Option<String> = None;
    // Open braces of a block being skipped (a set's elements, a named counter).
    let mut skip_depth = 0i64;
    // A rule whose braces did not close on its line.
    let mut pending = String::new();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if skip_depth > 0 {
            skip_depth += brace_balance(line);
            continue;
        }
        if !pending.is_empty() {
            pending.push(' ');
            pending.push_str(line);
            if brace_balance(&pending) <= 0 {
                push_rule(&mut ruleset, &table, &chain, &pending);
                pending.clear();
            }
            continue;
        }
        let unknown = || format!("line {}: unexpected {:?}", index + 1, raw.trim());
        match (&table, &chain) {
            (None, _) => {
                let header = line
                    .strip_prefix("table ")
                    .and_then(|rest| rest.strip_suffix('{'))
                    .ok_or_else(unknown)?;
                let key = header.split_whitespace().collect::<Vec<_>>().join(" ");
                ruleset.tables.entry(key.clone()).or_default();
                table = Some(key);
            }
            (Some(_), None) => {
                if line == "}" {
                    table = None;
                } else if let Some(name) = line
                    .strip_prefix("chain ")
                    .and_then(|rest| rest.strip_suffix('{'))
                {
                    let name = name.trim().to_owned();
                    table_mut(&mut ruleset, &table)
                        .chains
                        .entry(name.clone())
                        .or_default();
                    chain = Some(name);
                } else if let Some(object) = line.strip_suffix('{') {
                    let object = object.split_whitespace().collect::<Vec<_>>().join(" ");
                    table_mut(&mut ruleset, &table).objects.insert(object);
                    skip_depth = brace_balance(line);
                }
                // Anything else is a table attribute (`flags dormant`, `comment "…"`).
            }
            (Some(_), Some(_)) => {
                if line == "}" {
                    chain = None;
                } else if line.starts_with("type ") || line.starts_with("policy ") {
                    let chain = chain_mut(&mut ruleset, &table, &chain);
                    read_base_chain(line, chain).ok_or_else(unknown)?;
                } else if line.starts_with("comment ") || line.starts_with("devices ") {
                    // Chain attributes; a device list may span lines.
                    skip_depth = brace_balance(line).max(0);
                } else if brace_balance(line) > 0 {
                    pending = line.to_owned();
                } else {
                    push_rule(&mut ruleset, &table, &chain, line);
                }
            }
        }
    }
    if table.is_some() || skip_depth > 0 || !pending.is_empty() {
        return Err("the ruleset ends inside a block".to_owned());
    }
    for table in ruleset.tables.values_mut() {
        for chain in table.chains.values_mut() {
            chain.rules.sort();
        }
    }
    Ok(ruleset)
}

fn table_mut<'a>(ruleset: &'a mut Ruleset, table: &Option<String>) -> &'a mut Table {
    let key = table.as_ref().expect("inside a table");
    ruleset.tables.get_mut(key).expect("inserted at its header")
}

fn chain_mut<'a>(
    ruleset: &'a mut Ruleset,
    table: &Option<String>,
    chain: &Option<String>,
) -> &'a mut Chain {
    let name = chain.as_ref().expect("inside a chain");
    table_mut(ruleset, table)
        .chains
        .get_mut(name)
        .expect("inserted at its header")
}

fn push_rule(ruleset: &mut Ruleset, table: &Option<String>, chain: &Option<String>, rule: &str) {
    chain_mut(ruleset, table, chain)
        .rules
        .push(normalise_rule(rule));
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

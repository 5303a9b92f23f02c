//! Host patterns as Ansible expands them in an inventory: a trailing `:port` is dropped, and
//! each `[begin:end]` or `[begin:end:step]` range (numeric, zero-padded when `begin` is, or
//! single letters) stands for every name in it. Shared by the YAML and INI readers.

/// More names than this from one host pattern is a typo, not an inventory.
const MAX_EXPANSION: usize = 10_000;

/// The host names a pattern stands for, as Ansible's `parse_address` and `expand_hostname_range`
/// read it: a trailing `:port` is dropped, each `[begin:end]` or `[begin:end:step]` range
/// (numeric, zero-padded when `begin` is, or single letters) is expanded.
pub(crate) fn expand_host_pattern(pattern: &str) -> Result<Vec<String>, String> {
    let names = expand_ranges(strip_port(pattern))?;
    if names.len() > MAX_EXPANSION {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    Ok(names)
}

/// `name:port` → `name`. A colon inside `[...]` belongs to a range, and an address with more than
/// one colon outside brackets is IPv6, which has no port suffix.
fn strip_port(pattern: &str) -> &str {
    let mut depth = 0usize;
    let mut colons = Vec::new();
    for (i, c) in pattern.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ':' if depth == 0 => colons.push(i),
            _ => {}
        }
    }
    if let [colon] = colons[..] {
        let (name, port) = (&pattern[..colon], &pattern[colon + 1..]);
        if !name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
            return name;
        }
    }
    pattern
}

fn expand_ranges(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else {
        return Ok(vec![pattern.to_owned()]);
    };
    let close = pattern[open..]
        .find(']')
        .map(|i| open + i)
        .ok_or("unclosed `[`")?;
    let (head, range, tail) = (
        &pattern[..open],
        &pattern[open + 1..close],
        &pattern[close + 1..],
    );
    let values = range_values(range)?;
    let tails = expand_ranges(tail)?;
    if values.len().saturating_mul(tails.len()) > MAX_EXPANSION {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    let mut names = Vec::with_capacity(values.len() * tails.len());
    for value in &values {
        for tail in &tails {
            names.push(format!("{head}{value}{tail}"));
        }
    }
    Ok(names)
}

/// The values of one range, `begin:end` or `begin:end:step`.
fn range_values(range: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`[{range}]` is not a host range (begin:end or begin:end:step)");
    let parts: Vec<&str> = range.split(':').collect();
    let (begin, end, step) = match parts[..] {
        // Ansible reads an empty begin as 0.
        ["", end] => ("0", end, 1),
        ["", end, step] => ("0", end, step.parse::<usize>().map_err(|_| bad())?),
        [begin, end] => (begin, end, 1),
        [begin, end, step] => (begin, end, step.parse::<usize>().map_err(|_| bad())?),
        _ => return Err(bad()),
    };
    if step == 0 {
        return Err(bad());
    }
    let is_number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let is_letter = |s: &str| s.len() == 1 && s.bytes().all(|b| b.is_ascii_alphabetic());
    if is_letter(begin) && is_letter(end) {
        // Ansible's order is `string.ascii_letters`: a-z then A-Z.
        const LETTERS: &str = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        let (b, e) = (
            LETTERS.find(begin).ok_or_else(bad)?,
            LETTERS.find(end).ok_or_else(bad)?,
        );
        if b > e {
            return Err(format!("`[{range}]` must have begin <= end"));
        }
        return Ok(LETTERS[b..=e]
            .chars()
            .step_by(step)
            .map(String::from)
            .collect());
    }
    if !(is_number(begin) && is_number(end)) {
        return Err(bad());
    }
    let (b, e) = (
        begin.parse::<u64>().map_err(|_| bad())?,
        end.parse::<u64>().map_err(|_| bad())?,
    );
    if b > e {
        return Err(format!("`[{range}]` must have begin <= end"));
    }
    if (e - b) / step as u64 >= MAX_EXPANSION as u64 {
        return Err(format!("expands to more than {MAX_EXPANSION} hosts"));
    }
    // A zero-padded begin fixes the width, and then end must be written with the same width.
    let width = if begin.len() > 1 && begin.starts_with('0') {
        if end.len() != begin.len() {
            return Err(format!(
                "`[{range}]` must write begin and end with the same width"
            ));
        }
        begin.len()
    } else {
        0
    };
    Ok((b..=e)
        .step_by(step)
        .map(|n| format!("{n:0width$}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::expand_host_pattern;

    #[test]
    fn patterns_expand_like_ansible() {
        let e = |p: &str| expand_host_pattern(p).unwrap();
        assert_eq!(e("askari"), ["askari"]);
        assert_eq!(e("askari:2222"), ["askari"]);
        assert_eq!(e("web[1:3]"), ["web1", "web2", "web3"]);
        assert_eq!(
            e("web[08:10].example:22"),
            ["web08.example", "web09.example", "web10.example"]
        );
        assert_eq!(e("n[0:6:3]"), ["n0", "n3", "n6"]);
        assert_eq!(e("db-[a:c]"), ["db-a", "db-b", "db-c"]);
        assert_eq!(e("[a:b][1:2]"), ["a1", "a2", "b1", "b2"]);
        // An empty begin is 0, as in Ansible's `expand_hostname_range`.
        assert_eq!(e("w[:2]"), ["w0", "w1", "w2"]);
        assert_eq!(e("fe80::1"), ["fe80::1"]);
        for bad in [
            "web[1:]",
            "web[3:1]",
            "web[01:100]",
            "web[1",
            "web[x]",
            "web[1:9:0]",
            "w[0:99999999]",
        ] {
            assert!(expand_host_pattern(bad).is_err(), "{bad}");
        }
    }
}

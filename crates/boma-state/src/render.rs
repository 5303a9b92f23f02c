//! The reboot diff as a person reads it at a glance: on stderr and in `reboot-diff.txt`.

use std::fmt::Write as _;

use crate::diff::RebootDiff;
use crate::finding::Finding;

/// A header with counts, then `LOST  …` and `NEW   …` lines (details indented below each), the
/// number of ignored findings, how many each of the profile's patterns hid, and the parts that
/// could not be compared.
pub fn render_text(diff: &RebootDiff) -> String {
    let mut text = format!(
        "reboot diff: {} lost, {} new, {} ignored, {} unavailable\n",
        diff.lost.len(),
        diff.appeared.len(),
        diff.ignored.len(),
        diff.unavailable.len()
    );
    for finding in &diff.lost {
        line(&mut text, "LOST", finding);
    }
    for finding in &diff.appeared {
        line(&mut text, "NEW", finding);
    }
    if !diff.ignored.is_empty() {
        let n = diff.ignored.len();
        let noun = if n == 1 { "difference" } else { "differences" };
        let _ = writeln!(
            text,
            "ignored: {n} known {noun} between boots (listed in reboot-diff.json)"
        );
    }
    for hits in &diff.hidden_by_profile {
        let noun = if hits.hid == 1 { "finding" } else { "findings" };
        let _ = writeln!(
            text,
            "reboot_diff_ignore {:?} hid {} {noun}",
            hits.pattern, hits.hid
        );
    }
    if !diff.unavailable.is_empty() {
        text.push_str("unavailable, not compared:\n");
        for why in &diff.unavailable {
            let _ = writeln!(text, "      {why}");
        }
    }
    text
}

fn line(text: &mut String, label: &str, finding: &Finding) {
    let _ = writeln!(text, "{label:<5} {finding}");
    if let Some(detail) = &finding.detail {
        let _ = writeln!(text, "      {detail}");
    }
}

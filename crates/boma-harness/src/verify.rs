//! What a verify playbook found, read from the results file it writes on the controller.

use serde::{Deserialize, Serialize};

/// The results file (`boma_it_results_file`), written by a profile's verify playbook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyResults {
    pub checks: Vec<Check>,
}

/// One outcome-based check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    /// A short machine-readable cause (`timeout`, `refused`, `tls`, `ok` …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Evidence: a chain listing, a curl error.
    #[serde(default)]
    pub detail: Option<serde_json::Value>,
}

impl VerifyResults {
    pub fn parse(text: &str) -> Result<VerifyResults, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn failed(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.clone())
            .collect()
    }

    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_results_and_names_failures() {
        let text = r#"{"checks": [
            {"name": "docker_active", "ok": true, "reason": "ok", "detail": "active"},
            {"name": "forward_chain_accepts_containers", "ok": false, "reason": "pure_drop", "detail": "chain forward { policy drop; }"},
            {"name": "https_443_from_controller", "ok": false, "reason": "timeout"}
        ]}"#;
        let results = VerifyResults::parse(text).unwrap();
        assert!(!results.passed());
        assert_eq!(
            results.failed(),
            vec![
                "forward_chain_accepts_containers",
                "https_443_from_controller"
            ]
        );
        let summary = crate::checks::summary(&crate::checks::from_verify(&results));
        insta::assert_snapshot!("verify_summary_red", summary);
    }

    #[test]
    fn no_checks_is_not_a_pass() {
        assert!(!VerifyResults::parse(r#"{"checks": []}"#).unwrap().passed());
    }
}

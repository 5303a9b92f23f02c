//! The repository's own rules for test runs, as data (`tests/integration/policy.yml`), so that
//! no role variable of this repository is a constant buried in the harness:
//! - `required`: variables the run's variable files must end up setting to a value (a test VM
//!   must never join the real mesh: `base__mesh_enabled: false`);
//! - `refused`: combinations of values that cannot work (a Let's Encrypt tier with a Caddy image
//!   that lacks its DNS module), refused before anything is created, with the reason and fix.
//!
//! "End up setting" is Ansible's rule for `-e @file`: the last file that sets a variable wins.
//! Pure: the caller reads the files.

use std::collections::BTreeMap;

use saphyr::{LoadableYamlNode, Scalar, Yaml};

/// Where the policy lives, relative to the repo root.
pub const POLICY_FILE: &str = "tests/integration/policy.yml";

/// A variable the run must end up setting to a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub variable: String,
    /// The value, as YAML scalar text compared after parsing (`false`, `"debian"`).
    pub value: ScalarValue,
    pub why: String,
}

/// A combination of values that is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub when: BTreeMap<String, ScalarValue>,
    pub why: String,
    pub fix: String,
}

/// The policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub required: Vec<Required>,
    pub refused: Vec<Refused>,
}

/// A YAML scalar, compared by meaning (`false` and `no`… are YAML 1.2 here: `false` only).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ScalarValue {
    Bool(bool),
    Int(i64),
    Str(String),
    Null,
}

impl std::fmt::Display for ScalarValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScalarValue::Bool(b) => write!(f, "{b}"),
            ScalarValue::Int(i) => write!(f, "{i}"),
            ScalarValue::Str(s) => write!(f, "{s:?}"),
            ScalarValue::Null => f.write_str("null"),
        }
    }
}

fn scalar(node: &Yaml) -> Option<ScalarValue> {
    match node {
        Yaml::Value(Scalar::Boolean(b)) => Some(ScalarValue::Bool(*b)),
        Yaml::Value(Scalar::Integer(i)) => Some(ScalarValue::Int(*i)),
        Yaml::Value(Scalar::String(s)) => Some(ScalarValue::Str(s.to_string())),
        Yaml::Value(Scalar::Null) => Some(ScalarValue::Null),
        _ => None,
    }
}

/// Why a policy or a variable file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub message: String,
}

fn error(file: &str, message: impl Into<String>) -> PolicyError {
    PolicyError {
        file: file.to_owned(),
        message: message.into(),
    }
}

fn text_of(node: &Yaml, file: &str, key: &str) -> Result<String, PolicyError> {
    node.as_mapping_get(key)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| error(file, format!("each entry needs a `{key}` text")))
}

impl Policy {
    /// Parse the policy file's text.
    pub fn parse(file: &str, text: &str) -> Result<Policy, PolicyError> {
        let docs =
            Yaml::load_from_str(text).map_err(|e| error(file, format!("malformed yaml: {e}")))?;
        let Some(doc) = docs.first() else {
            return Ok(Policy::default());
        };
        let mut policy = Policy::default();
        if let Some(required) = doc.as_mapping_get("required") {
            for entry in required
                .as_sequence()
                .ok_or_else(|| error(file, "`required` must be a list"))?
            {
                let variable = text_of(entry, file, "variable")?;
                let value = entry
                    .as_mapping_get("value")
                    .and_then(scalar)
                    .ok_or_else(|| error(file, format!("`{variable}` needs a scalar `value`")))?;
                policy.required.push(Required {
                    variable,
                    value,
                    why: text_of(entry, file, "why")?,
                });
            }
        }
        if let Some(refused) = doc.as_mapping_get("refused") {
            for entry in refused
                .as_sequence()
                .ok_or_else(|| error(file, "`refused` must be a list"))?
            {
                let when = entry
                    .as_mapping_get("when")
                    .and_then(Yaml::as_mapping)
                    .ok_or_else(|| {
                        error(file, "each refused combination needs a `when` mapping")
                    })?;
                let mut values = BTreeMap::new();
                for (key, value) in when {
                    let key = key
                        .as_str()
                        .ok_or_else(|| error(file, "`when` keys are variable names"))?;
                    let value = scalar(value)
                        .ok_or_else(|| error(file, format!("`when.{key}` must be a scalar")))?;
                    values.insert(key.to_owned(), value);
                }
                policy.refused.push(Refused {
                    when: values,
                    why: text_of(entry, file, "why")?,
                    fix: text_of(entry, file, "fix")?,
                });
            }
        }
        Ok(policy)
    }
}

/// What the run's variable files (in the order Ansible applies them) end up setting: each
/// top-level scalar variable's last value. Non-scalar values are recorded as absent from the
/// comparison (a policy compares scalars only).
pub fn effective_values<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<BTreeMap<String, (ScalarValue, String)>, PolicyError> {
    let mut values = BTreeMap::new();
    for (file, text) in files {
        let docs =
            Yaml::load_from_str(text).map_err(|e| error(file, format!("malformed yaml: {e}")))?;
        let Some(doc) = docs.first() else { continue };
        let map = match doc {
            Yaml::Mapping(map) => map,
            Yaml::Value(Scalar::Null) => continue,
            _ => return Err(error(file, "extra vars must be a yaml mapping")),
        };
        for (key, value) in map {
            let Some(key) = key.as_str() else { continue };
            match scalar(value) {
                Some(v) => {
                    values.insert(key.to_owned(), (v, file.to_owned()));
                }
                None => {
                    values.remove(key);
                }
            }
        }
    }
    Ok(values)
}

/// Every way the run's files break the policy, one line each naming the problem and the fix.
pub fn violations(
    policy: &Policy,
    values: &BTreeMap<String, (ScalarValue, String)>,
) -> Vec<String> {
    let mut found = Vec::new();
    for rule in &policy.required {
        match values.get(&rule.variable) {
            Some((value, _)) if *value == rule.value => {}
            Some((value, file)) => found.push(format!(
                "{file} leaves `{}: {value}`, and the repo policy ({POLICY_FILE}) requires `{}: {}`: {}; set it in the profile's override file",
                rule.variable, rule.variable, rule.value, rule.why
            )),
            None => found.push(format!(
                "the profile's variable files do not set `{}: {}`, which the repo policy ({POLICY_FILE}) requires: {}; set it in the profile's override file",
                rule.variable, rule.value, rule.why
            )),
        }
    }
    for rule in &policy.refused {
        let all = rule
            .when
            .iter()
            .all(|(k, v)| values.get(k).is_some_and(|(value, _)| value == v));
        if all {
            let set: Vec<String> = rule.when.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            found.push(format!(
                "this profile and cert tier cannot work together ({}): {}; {}",
                set.join(", "),
                rule.why,
                rule.fix
            ));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: &str = "---
required:
  - variable: base__mesh_enabled
    value: false
    why: a test VM must never join the real mesh
refused:
  - when:
      image: debian
      dns: gandi
    why: the image has no gandi module
    fix: use --certs internal
";

    fn values(files: &[(&str, &str)]) -> BTreeMap<String, (ScalarValue, String)> {
        effective_values(files.iter().copied()).unwrap()
    }

    #[test]
    fn the_last_file_that_sets_a_variable_wins() {
        let v = values(&[
            ("a.yml", "base__mesh_enabled: true\nx: 1\n"),
            ("b.yml", "---\nbase__mesh_enabled: false\n"),
            ("c.yml", "---\n"),
        ]);
        assert_eq!(v["base__mesh_enabled"].0, ScalarValue::Bool(false));
        assert_eq!(v["base__mesh_enabled"].1, "b.yml");
        assert_eq!(v["x"].0, ScalarValue::Int(1));
    }

    #[test]
    fn required_values_and_refused_combinations() {
        let policy = Policy::parse("policy.yml", POLICY).unwrap();
        assert!(
            violations(
                &policy,
                &values(&[("o.yml", "base__mesh_enabled: false\n")])
            )
            .is_empty()
        );
        let on = violations(&policy, &values(&[("o.yml", "base__mesh_enabled: true\n")]));
        assert_eq!(on.len(), 1);
        assert!(
            on[0].contains("o.yml leaves `base__mesh_enabled: true`"),
            "{}",
            on[0]
        );
        let unset = violations(&policy, &values(&[("o.yml", "x: 1\n")]));
        assert!(
            unset[0].contains("do not set `base__mesh_enabled: false`"),
            "{}",
            unset[0]
        );
        let combo = violations(
            &policy,
            &values(&[
                ("o.yml", "base__mesh_enabled: false\nimage: debian\n"),
                ("certs/le.yml", "dns: gandi\n"),
            ]),
        );
        assert_eq!(combo.len(), 1);
        assert!(
            combo[0].contains("no gandi module") && combo[0].contains("--certs internal"),
            "{}",
            combo[0]
        );
        let half = violations(
            &policy,
            &values(&[(
                "o.yml",
                "base__mesh_enabled: false\nimage: debian\ndns: \"\"\n",
            )]),
        );
        assert!(half.is_empty(), "{half:?}");
    }

    #[test]
    fn malformed_files_are_named() {
        let err = effective_values([("o.yml", "- a\n- b\n")]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("o.yml: extra vars must be a yaml mapping"),
            "{err}"
        );
        let err = Policy::parse("p.yml", "required: 3\n").unwrap_err();
        assert!(
            err.to_string().contains("`required` must be a list"),
            "{err}"
        );
    }

    #[test]
    fn the_repos_policy_parses_and_requires_the_mesh_off() {
        let text = include_str!("../../../tests/integration/policy.yml");
        let policy = Policy::parse(POLICY_FILE, text).unwrap();
        assert!(
            policy
                .required
                .iter()
                .any(|r| r.variable == "base__mesh_enabled" && r.value == ScalarValue::Bool(false))
        );
    }
}

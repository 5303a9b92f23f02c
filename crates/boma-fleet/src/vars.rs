//! The fleet's `-e` files as values: read from YAML, and held against each other. Extra vars
//! apply to every host of a run, so in a fleet a file one member's profile names reaches its
//! peers too; two files that set one variable to two values would leave every member with the
//! later one, whatever each profile meant. Preflight refuses that ([`conflicts`]). Pure.

use std::collections::BTreeMap;

use camino::Utf8PathBuf;
use saphyr::{LoadableYamlNode, Scalar, Yaml};
use serde_json::{Map, Value};

/// A variable file's top-level variables.
pub type Vars = Map<String, Value>;

/// Why a variable file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct VarsFileError {
    pub file: String,
    pub message: String,
}

/// Reads a variable file (`file` is how errors name it) into JSON values. Tags (`!vault`,
/// `!unsafe`) are dropped: the value under them is what two files are compared by. Merge keys
/// (`<<: *defaults`) are merged, a key of the mapping itself winning, as PyYAML does. Scalars
/// are read as YAML 1.2 (saphyr), where PyYAML reads YAML 1.1: `yes` is a string here, a
/// boolean there; two files differing only that way are not refused.
pub fn read_vars_file(file: &str, text: &str) -> Result<Vars, VarsFileError> {
    let error = |message: String| VarsFileError {
        file: file.to_owned(),
        message,
    };
    let docs = Yaml::load_from_str(text).map_err(|e| error(format!("malformed yaml: {e}")))?;
    match docs.first().map(to_json) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(error("extra vars must be a yaml mapping".into())),
    }
}

fn to_json(node: &Yaml<'_>) -> Value {
    match node {
        Yaml::Value(scalar) => scalar_json(scalar),
        Yaml::Representation(text, _, _) => Value::String(text.to_string()),
        Yaml::Tagged(_, inner) => to_json(inner),
        Yaml::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        Yaml::Mapping(entries) => {
            let mut map = Map::new();
            let mut merged = Map::new();
            for (key, value) in entries {
                let key = match key {
                    Yaml::Value(Scalar::String(s)) => s.to_string(),
                    other => match to_json(other) {
                        Value::String(s) => s,
                        json => json.to_string(),
                    },
                };
                if key == "<<" {
                    let sources = match to_json(value) {
                        Value::Array(list) => list,
                        one => vec![one],
                    };
                    for source in sources {
                        if let Value::Object(fields) = source {
                            for (k, v) in fields {
                                merged.entry(k).or_insert(v);
                            }
                        }
                    }
                } else {
                    map.insert(key, to_json(value));
                }
            }
            for (k, v) in merged {
                map.entry(k).or_insert(v);
            }
            Value::Object(map)
        }
        Yaml::Alias(_) | Yaml::BadValue => Value::Null,
    }
}

fn scalar_json(scalar: &Scalar<'_>) -> Value {
    match scalar {
        Scalar::Null => Value::Null,
        Scalar::Boolean(b) => Value::Bool(*b),
        Scalar::Integer(i) => Value::from(*i),
        Scalar::FloatingPoint(f) => serde_json::Number::from_f64(f.into_inner())
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        Scalar::String(s) => Value::String(s.to_string()),
    }
}

/// Two files setting one variable to two values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub variable: String,
    pub first: (Utf8PathBuf, Value),
    pub second: (Utf8PathBuf, Value),
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` is {} in {} and {} in {}: extra vars reach every member, so every member would get the second; set it in one file, or per member in the inventory",
            self.variable, self.first.1, self.first.0, self.second.1, self.second.0
        )
    }
}

/// Every variable that two of `files` (in order) set to different values, against the first
/// file that set it.
pub fn conflicts(files: &[(Utf8PathBuf, Vars)]) -> Vec<Conflict> {
    let mut first: BTreeMap<&str, (&Utf8PathBuf, &Value)> = BTreeMap::new();
    let mut found = Vec::new();
    for (file, vars) in files {
        for (variable, value) in vars {
            match first.get(variable.as_str()) {
                None => {
                    first.insert(variable, (file, value));
                }
                Some((earlier, was)) if *was != value => found.push(Conflict {
                    variable: variable.clone(),
                    first: ((*earlier).clone(), (*was).clone()),
                    second: (file.clone(), value.clone()),
                }),
                Some(_) => {}
            }
        }
    }
    found
}

//! The mesh guard: a test VM must never join the real mesh. The profile's variable files
//! (passed as `-e @file`, later ones winning, as Ansible applies them) must end with
//! `base__mesh_enabled: false`. Pure: the caller reads the files.

use saphyr::{LoadableYamlNode, Scalar, Yaml};

/// The variable that turns the mesh client on in `base`.
pub const MESH_VARIABLE: &str = "base__mesh_enabled";

/// What the variable files say about the mesh, in the order Ansible applies them: `Some(v)`
/// when the last file that sets it sets it to the boolean `v`, `None` when none sets it, and
/// `Err` (naming the file) when a file is not a YAML mapping or sets it to a non-boolean.
pub fn mesh_setting<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<bool>, String> {
    let mut setting = None;
    for (file, text) in files {
        let docs = Yaml::load_from_str(text).map_err(|e| format!("{file}: malformed yaml: {e}"))?;
        let Some(doc) = docs.first() else { continue };
        let Yaml::Mapping(map) = doc else {
            if matches!(doc, Yaml::Value(Scalar::Null)) {
                continue;
            }
            return Err(format!("{file}: extra vars must be a yaml mapping"));
        };
        for (key, value) in map {
            if key.as_str() == Some(MESH_VARIABLE) {
                setting = Some(value.as_bool().ok_or_else(|| {
                    format!("{file}: {MESH_VARIABLE} must be true or false, not {value:?}")
                })?);
            }
        }
    }
    Ok(setting)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_file_that_sets_it_wins() {
        let off = ("overrides/a.yml", "---\nbase__mesh_enabled: false\nx: 1\n");
        let on = ("overrides/b.yml", "base__mesh_enabled: true\n");
        let silent = (
            "certs/internal.yml",
            "---\nreverse_proxy__tls_internal: true\n",
        );
        assert_eq!(mesh_setting([off, silent]), Ok(Some(false)));
        assert_eq!(mesh_setting([off, on]), Ok(Some(true)));
        assert_eq!(mesh_setting([silent]), Ok(None));
        assert_eq!(mesh_setting([]), Ok(None));
    }

    #[test]
    fn a_non_boolean_or_a_non_mapping_is_an_error_naming_the_file() {
        let err = mesh_setting([("overrides/a.yml", "base__mesh_enabled: \"no\"\n")]).unwrap_err();
        assert!(
            err.contains("overrides/a.yml") && err.contains(MESH_VARIABLE),
            "{err}"
        );
        let err = mesh_setting([("overrides/a.yml", "- a\n- b\n")]).unwrap_err();
        assert!(err.contains("mapping"), "{err}");
    }
}

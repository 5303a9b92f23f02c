//! YAML inventory files (Ansible's `yaml` plugin): top-level group names (usually just `all`),
//! each with optional `hosts` (a mapping of host name to vars), `children` (a mapping of group
//! name to the same structure) and `vars`. Read with `saphyr`, a maintained YAML 1.2 parser
//! (serde_yaml is deprecated), keeping positions so that errors point into the file.
//!
//! Anything that could hide a host is an error rather than skipped: a `hosts` that is not a
//! mapping, a host name that is not a string. Host patterns are expanded as Ansible does, so
//! every name Ansible would see is returned. Each group listed under another's `children` is
//! recorded with that group as a parent.

use std::collections::BTreeSet;

use saphyr::{LoadableYamlNode, MarkedYaml, Scalar, YamlData};

use super::{Fleet, InventoryError, expand_host_pattern};
use boma_yaml::untag;

/// Every host name in the text of one YAML inventory file; `file` is how errors name it.
pub fn host_names(file: &str, text: &str) -> Result<BTreeSet<String>, InventoryError> {
    Ok(fleet(file, text)?.names())
}

/// The hosts of one YAML inventory file, with their `ansible_host`; `file` is how errors name it.
pub fn fleet(file: &str, text: &str) -> Result<Fleet, InventoryError> {
    let docs = MarkedYaml::load_from_str(text).map_err(|e| InventoryError::Malformed {
        file: file.to_owned(),
        line: e.marker().line(),
        column: e.marker().col() + 1,
        message: e.info().to_owned(),
    })?;
    let walker = Walker { file };
    let mut fleet = Fleet::default();
    match docs.as_slice() {
        // An empty file is an empty inventory, as for Ansible.
        [] => {}
        [doc] => walker.groups(doc, "the top level", None, &mut fleet)?,
        [_, second, ..] => {
            return Err(walker.shape(second, "an inventory file holds one yaml document"));
        }
    }
    Ok(fleet)
}

/// Whether `text` loads as one YAML document that is a mapping: how Ansible's `yaml` plugin
/// takes a file without an extension (anything else falls through to its `ini` plugin).
pub(super) fn is_mapping(text: &str) -> bool {
    match MarkedYaml::load_from_str(text).as_deref() {
        Ok([doc]) => matches!(untag(doc).data, YamlData::Mapping(_)),
        _ => false,
    }
}

/// Whether the top level of `text` has a `plugin` key: then it configures an inventory plugin
/// (Ansible's `auto` plugin loads it) instead of listing hosts.
pub(super) fn has_plugin_key(text: &str) -> bool {
    let Ok(docs) = MarkedYaml::load_from_str(text) else {
        return false;
    };
    docs.iter().any(|doc| match &untag(doc).data {
        YamlData::Mapping(top) => top.keys().any(|k| untag(k).data.as_str() == Some("plugin")),
        _ => false,
    })
}

struct Walker<'a> {
    file: &'a str,
}

impl Walker<'_> {
    fn shape(&self, node: &MarkedYaml<'_>, message: impl Into<String>) -> InventoryError {
        InventoryError::Shape {
            file: self.file.to_owned(),
            line: node.span.start.line(),
            column: node.span.start.col() + 1,
            message: message.into(),
        }
    }

    /// A mapping of group name to group definition: the top level (no `parent`: Ansible puts
    /// such a group under `all` unless another lists it), or the `children` of group `parent`.
    fn groups(
        &self,
        node: &MarkedYaml<'_>,
        what: &str,
        parent: Option<&str>,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let groups = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(groups) => groups,
            _ => return Err(self.shape(node, format!("{what} must be a mapping of group names"))),
        };
        for (name, group) in groups {
            let name = self.name(name, "group")?;
            if let Some(parent) = parent {
                fleet.add_child(parent, &name);
            }
            self.group(&name, group, fleet)?;
        }
        Ok(())
    }

    fn group(
        &self,
        name: &str,
        node: &MarkedYaml<'_>,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let entries = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(entries) => entries,
            _ => {
                return Err(self.shape(
                    node,
                    format!("group `{name}` must be a mapping (hosts, children, vars)"),
                ));
            }
        };
        for (key, value) in entries {
            match untag(key).data.as_str() {
                Some("hosts") => self.hosts(name, value, fleet)?,
                Some("children") => self.groups(
                    value,
                    &format!("`children` of group `{name}`"),
                    Some(name),
                    fleet,
                )?,
                // Its hosts connect there unless they set their own `ansible_host`.
                Some("vars") => {
                    if let Some(given) = self.ansible_host(&format!("group `{name}`"), value)? {
                        fleet.add_group_host(name, &given);
                    }
                }
                // Ansible skips other keys with a warning.
                _ => {}
            }
        }
        Ok(())
    }

    fn hosts(
        &self,
        group: &str,
        node: &MarkedYaml<'_>,
        fleet: &mut Fleet,
    ) -> Result<(), InventoryError> {
        let node = untag(node);
        let patterns = match &node.data {
            YamlData::Value(Scalar::Null) => return Ok(()),
            YamlData::Mapping(patterns) => patterns,
            _ => {
                return Err(self.shape(
                    node,
                    format!("`hosts` of group `{group}` must be a mapping of host names"),
                ));
            }
        };
        for (key, vars) in patterns {
            let pattern = self.name(key, "host")?;
            let names = expand_host_pattern(&pattern)
                .map_err(|message| self.shape(key, format!("host `{pattern}`: {message}")))?;
            let given = self.ansible_host(&format!("host `{pattern}`"), vars)?;
            let local = is_local(vars);
            let at = format!("{}:{}", self.file, key.span.start.line());
            for name in names {
                fleet.add_host(name, at.clone(), given.as_deref(), local);
            }
        }
        Ok(())
    }

    /// The `ansible_host` among the vars of `whose` (a host or a group), if they set one.
    fn ansible_host(
        &self,
        whose: &str,
        vars: &MarkedYaml<'_>,
    ) -> Result<Option<String>, InventoryError> {
        let YamlData::Mapping(vars) = &untag(vars).data else {
            return Ok(None);
        };
        for (key, value) in vars {
            if untag(key).data.as_str() == Some("ansible_host") {
                return match &untag(value).data {
                    YamlData::Value(Scalar::String(s)) => Ok(Some(s.trim().to_owned())),
                    _ => Err(self.shape(
                        value,
                        format!("the `ansible_host` of {whose} must be a string"),
                    )),
                };
            }
        }
        Ok(None)
    }

    /// A group or host name: a string, or an integer that Ansible would read as one.
    fn name(&self, node: &MarkedYaml<'_>, what: &str) -> Result<String, InventoryError> {
        match &untag(node).data {
            YamlData::Value(Scalar::String(s)) => Ok(s.to_string()),
            YamlData::Value(Scalar::Integer(i)) => Ok(i.to_string()),
            _ => Err(self.shape(node, format!("a {what} name must be a string"))),
        }
    }
}

/// Whether a host's vars say `ansible_connection: local`.
fn is_local(vars: &MarkedYaml<'_>) -> bool {
    let YamlData::Mapping(vars) = &untag(vars).data else {
        return false;
    };
    vars.iter().any(|(key, value)| {
        untag(key).data.as_str() == Some("ansible_connection")
            && untag(value).data.as_str() == Some("local")
    })
}

#[cfg(test)]
mod tests {
    use super::host_names;

    fn names(text: &str) -> Vec<String> {
        host_names("hosts.yml", text).unwrap().into_iter().collect()
    }

    #[test]
    fn all_with_hosts_and_nested_children() {
        let text = "
all:
  hosts:
    askari:
      ansible_host: 192.0.2.10
  vars:
    ignored: [not, a, host]
  children:
    offsite_hosts:
      hosts:
        kiboko: {}
        simba:
      children:
        deep:
          hosts: {twiga: null}
    empty_group:
    only_vars:
      vars: {hosts: not-a-host}
";
        assert_eq!(names(text), ["askari", "kiboko", "simba", "twiga"]);
    }

    #[test]
    fn top_level_groups_without_all() {
        assert_eq!(
            names("web:\n  hosts:\n    a:\ndb:\n  hosts: {b: {}}\n"),
            ["a", "b"]
        );
    }

    #[test]
    fn empty_inventory_has_no_hosts() {
        assert!(names("").is_empty());
        assert!(names("all:\n").is_empty());
    }

    #[test]
    fn tags_and_integer_names() {
        assert_eq!(
            names("all:\n  hosts:\n    !custom h1:\n    42:\n"),
            ["42", "h1"]
        );
    }

    #[test]
    fn anchors_are_followed() {
        let text = "all:\n  children:\n    a: &g\n      hosts: {x: }\n    b: *g\n";
        assert_eq!(names(text), ["x"]);
    }

    #[test]
    fn structure_that_could_hide_hosts_is_an_error() {
        let err = |t: &str| {
            host_names("inventories/production/hosts.yml", t)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("all:\n  children:\n    web:\n      hosts: [a, b]\n"),
            "inventories/production/hosts.yml:4:14: `hosts` of group `web` must be a mapping of host names"
        );
        assert_eq!(
            err("all:\n  hosts:\n    [a]: {}\n"),
            "inventories/production/hosts.yml:3:5: a host name must be a string"
        );
        assert!(err("- a\n- b\n").contains("the top level must be a mapping of group names"));
        assert!(err("all: [a]\n").contains("group `all` must be a mapping"));
        assert!(err("all:\n  hosts: {a: }\n---\nb:\n").contains("one yaml document"));
        assert!(err("all:\n  hosts:\n    a: {\n").contains("malformed yaml"));
        assert!(
            err("all:\n  hosts:\n    w[1:]:\n")
                .contains("host `w[1:]`: `[1:]` is not a host range")
        );
    }

    #[test]
    fn fleet_addresses_come_from_ansible_host_or_a_literal_name() {
        let text = "\
all:
  children:
    offsite:
      hosts:
        askari: {ansible_host: 77.42.120.136}
        kiboko:
          ansible_host: kiboko.example.net
        10.1.2.3:
        twiga: {ansible_connection: local}
        tembo:
        v6: {ansible_host: '2001:db8::7'}
    again:
      hosts:
        askari: {ansible_host: 77.42.120.137}
";
        let fleet = super::fleet("hosts.yml", text).unwrap();
        let addresses: Vec<String> = fleet.addresses().iter().map(|a| a.to_string()).collect();
        assert_eq!(
            addresses,
            ["10.1.2.3", "77.42.120.136", "77.42.120.137", "2001:db8::7"]
        );
        assert_eq!(
            fleet.named_only(),
            [
                ("kiboko".to_owned(), "kiboko.example.net".to_owned()),
                ("tembo".to_owned(), "tembo".to_owned()),
            ]
        );
        let err = super::fleet("hosts.yml", "all:\n  hosts:\n    a: {ansible_host: [x]}\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "hosts.yml:3:23: the `ansible_host` of host `a` must be a string"
        );
    }
}

//! Helpers over saphyr's marked YAML nodes, shared by the inventory reader and the vars scanner.
//! (`boma-tags` has its own copy of [`untag`]; the two can merge into one shared crate.)

use saphyr::{MarkedYaml, YamlData};

/// The node under a YAML tag (`!unsafe`, `!vault`, a custom one): a tag does not change the
/// structure Ansible sees.
pub(crate) fn untag<'a, 'input>(node: &'a MarkedYaml<'input>) -> &'a MarkedYaml<'input> {
    match &node.data {
        YamlData::Tagged(_, inner) => untag(inner),
        _ => node,
    }
}

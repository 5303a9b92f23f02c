//! Every program the doctor looks for is installed by the `integration_test` role, so
//! "the doctor finds every tool" and "the role has nothing left to install" mean the same.

use boma_host::tools::{Package, TOOLS};

fn role_defaults() -> String {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../roles/integration_test/defaults/main.yml"
    );
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The items of the top-level YAML list `key` (one `  - item` per line).
fn yaml_list(text: &str, key: &str) -> Vec<String> {
    text.lines()
        .skip_while(|line| *line != format!("{key}:"))
        .skip(1)
        .take_while(|line| line.starts_with("  - "))
        .map(|line| line.trim_start_matches("  - ").trim().to_owned())
        .collect()
}

#[test]
fn the_role_installs_every_package_the_doctor_names() {
    let defaults = role_defaults();
    let packages = yaml_list(&defaults, "integration_test__packages");
    assert!(packages.len() > 10, "{packages:?}");
    for tool in TOOLS {
        match tool.package {
            Package::Named(name) => assert!(
                packages.iter().any(|p| p == name),
                "{} comes from {name}, which roles/integration_test/defaults/main.yml does not install",
                tool.program
            ),
            Package::VirtInstall => {
                let line = defaults
                    .lines()
                    .find(|l| l.starts_with("integration_test__virt_install_package:"))
                    .expect("the virt-install package variable");
                assert!(
                    line.contains("'virtinst'") && line.contains("'virt-install'"),
                    "{line}"
                );
            }
        }
    }
}

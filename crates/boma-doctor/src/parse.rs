//! Reading the repository's Ansible (`ansible-playbook --version`, `requirements.txt`) into
//! facts. Pure: text in, value out. (The machine's own texts are `boma_host::parse`'s.)

/// The ansible-core version in `ansible-playbook --version` (`ansible-playbook [core 2.18.12]`).
pub fn ansible_core_version(output: &str) -> Option<String> {
    let first = output.lines().next()?;
    let rest = first.split_once("[core ")?.1;
    let version = rest.split_once(']')?.0.trim();
    (!version.is_empty()).then(|| version.to_owned())
}

/// The exact `ansible-core==` pin of a pip requirements file.
pub fn pinned_core(requirements: &str) -> Option<String> {
    requirements.lines().find_map(|line| {
        let line = line.split('#').next()?.trim();
        let version = line.strip_prefix("ansible-core")?.trim_start();
        let version = version.strip_prefix("==")?.trim();
        (!version.is_empty()).then(|| version.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ansible_core_from_the_version_banner_and_the_pin() {
        let banner = "ansible-playbook [core 2.18.12]\n  config file = /repo/ansible.cfg\n";
        assert_eq!(ansible_core_version(banner).as_deref(), Some("2.18.12"));
        assert_eq!(ansible_core_version("usage: ansible-playbook"), None);
        let requirements = "# pins\nansible==11.13.0\nansible-core==2.18.12  # the engine\nansible-lint==26.10.1\n";
        assert_eq!(pinned_core(requirements).as_deref(), Some("2.18.12"));
        assert_eq!(pinned_core("ansible==11.13.0\n"), None);
        assert_eq!(pinned_core("ansible-core>=2.18\n"), None);
    }
}

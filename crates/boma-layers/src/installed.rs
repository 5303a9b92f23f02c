//! What Ansible loads from the controller besides the repository, for the key: the packages
//! installed in the venv it runs from (not what `requirements.txt` asks for: a venv built
//! from an older file, or upgraded by hand, runs other code), and files under directories
//! Ansible searches by default (collections and plugins in `~/.ansible`). Thin reads; the
//! parse of a distribution's directory name is pure.

use std::collections::BTreeMap;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};

use crate::key::FileDigest;
use crate::tree::{DiskTree, RepoTree as _, TreeError};

/// `name-version.dist-info` (or `.egg-info`): the distribution's normalized name and its
/// version. `None` for any other name.
pub fn distribution(dir_name: &str) -> Option<(String, String)> {
    let stem = dir_name
        .strip_suffix(".dist-info")
        .or_else(|| dir_name.strip_suffix(".egg-info"))?;
    let (name, version) = stem.split_once('-')?;
    if name.is_empty() || version.is_empty() {
        return None;
    }
    Some((
        name.to_ascii_lowercase().replace('-', "_"),
        version.to_owned(),
    ))
}

fn io_err(path: &Utf8Path) -> impl FnOnce(io::Error) -> TreeError {
    let path = path.to_owned();
    move |source| TreeError::Io { path, source }
}

/// The names (sorted) in `dir`.
fn names(dir: &Utf8Path) -> Result<Vec<String>, TreeError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Every distribution installed in the venv `venv` (`<venv>/lib/python*/site-packages`) by
/// name, with its version, and `python` with the version `pyvenv.cfg` records. An error when
/// `venv` is no venv: what would run could not be keyed.
pub fn venv_packages(venv: &Utf8Path) -> Result<BTreeMap<String, String>, TreeError> {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg).map_err(io_err(&cfg))?;
    let mut packages = BTreeMap::new();
    for line in text.lines() {
        if let Some((key, value)) = line.split_once('=')
            && matches!(key.trim(), "version" | "version_info")
        {
            packages.insert("python".to_owned(), value.trim().to_owned());
        }
    }
    let lib = venv.join("lib");
    for python in names(&lib)? {
        let site = lib.join(&python).join("site-packages");
        if !site.is_dir() {
            continue;
        }
        packages.insert(format!("{python} site-packages"), "present".to_owned());
        for name in names(&site)? {
            if let Some((package, version)) = distribution(&name) {
                packages.insert(package, version);
            }
        }
    }
    Ok(packages)
}

/// Every file under each of `dirs` that exists (through links), by absolute path, with the
/// SHA-256 of its content.
pub fn controller_files(dirs: &[Utf8PathBuf]) -> Result<BTreeMap<String, FileDigest>, TreeError> {
    let mut files = BTreeMap::new();
    for dir in dirs {
        if !dir.is_dir() {
            continue;
        }
        let tree = DiskTree::new(dir);
        for path in tree.files_except(&[])? {
            let content = tree
                .read(&path)?
                .ok_or_else(|| TreeError::Vanished { path: path.clone() })?;
            files.insert(
                dir.join(path.as_str()).to_string(),
                FileDigest::of(&content),
            );
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_directories_name_their_package_and_version() {
        assert_eq!(
            distribution("ansible_core-2.18.12.dist-info"),
            Some(("ansible_core".into(), "2.18.12".into()))
        );
        assert_eq!(
            distribution("jsonschema_specifications-2025.9.1.dist-info"),
            Some(("jsonschema_specifications".into(), "2025.9.1".into()))
        );
        assert_eq!(
            distribution("foo-1.0-py3.11.egg-info"),
            Some(("foo".into(), "1.0-py3.11".into()))
        );
        for other in ["ansible", "yaml", "_yaml", "x.dist-info", "-1.dist-info"] {
            assert_eq!(distribution(other), None, "{other}");
        }
    }

    #[test]
    fn a_venv_lists_its_distributions_and_python() {
        let tmp = tempfile::tempdir().unwrap();
        let venv = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            "home = /usr/bin\nversion = 3.11.2\n",
        )
        .unwrap();
        let site = venv.join("lib/python3.11/site-packages");
        for dir in [
            "ansible_core-2.18.12.dist-info",
            "ansible",
            "mitogen-0.3.54.dist-info",
        ] {
            std::fs::create_dir_all(site.join(dir)).unwrap();
        }
        let packages = venv_packages(venv).unwrap();
        assert_eq!(
            packages,
            BTreeMap::from([
                ("ansible_core".into(), "2.18.12".into()),
                ("mitogen".into(), "0.3.54".into()),
                ("python".into(), "3.11.2".into()),
                ("python3.11 site-packages".into(), "present".into()),
            ])
        );
        assert!(
            venv_packages(&venv.join("none")).is_err(),
            "no venv, no key"
        );
    }
}

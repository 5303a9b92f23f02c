//! The gatherer on this machine: it must create nothing where it looks, and report what it
//! cannot find as facts.

use boma_doctor::{Facts, VenvAnsible};
use boma_host::TOOLS;
use camino::Utf8PathBuf;

#[test]
fn gathering_creates_nothing_and_reports_absences_as_facts() {
    let scratch = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(scratch.path().to_owned()).unwrap();
    let repo = root.join("repo");
    std::fs::create_dir(&repo).unwrap();
    std::fs::write(repo.join("requirements.txt"), "ansible-core==2.18.12\n").unwrap();
    let cache = root.join("cache/boma-integration");
    let runs = repo.join("tests/integration/.run");
    let sh = xshell::Shell::new().unwrap();

    let facts = Facts::gather(&sh, &repo, &cache, &runs);

    assert_eq!(facts.tools.len(), TOOLS.len());
    assert_eq!(facts.venv.ansible, VenvAnsible::Missing);
    assert_eq!(facts.venv.pinned_core.as_deref(), Some("2.18.12"));
    assert!(!facts.image_cache.exists);
    assert!(facts.image_cache.images.is_empty());
    assert!(facts.memory.profiles.is_empty());
    // Measured where the directories would be created.
    assert!(facts.disk.cache.free_mib.is_some());
    assert_eq!(facts.disk.cache.device, facts.disk.runs.device);
    assert!(
        !cache.exists() && !runs.exists(),
        "the doctor created a directory"
    );
    let left: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["repo"], "the doctor created something");
}

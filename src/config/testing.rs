//! For tests only: a project in a temp folder with the shipped config and
//! rules, its root the folder. Shared by the stages' tests that need a
//! whole project (the live metrics, the pipeline); touches only its folder.

use std::path::Path;

use super::Loaded;

/// A project in a temp folder with the shipped config and rules.
pub fn project() -> (tempfile::TempDir, Loaded) {
    let dir = tempfile::tempdir().unwrap();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("rules");
    let text = include_str!("../../config/kamwatch.yaml")
        .replace("\nroot: ..\n", "\nroot: .\n")
        .replace(
            "\nrules: rules\n",
            &format!("\nrules: {}\n", rules.display()),
        );
    assert!(text.contains("\nroot: .\n") && text.contains(&rules.display().to_string()));
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, &text).unwrap();
    let cfg = Loaded {
        file,
        cfg: super::parse(&text).unwrap(),
    };
    std::fs::create_dir_all(cfg.inbox()).unwrap();
    (dir, cfg)
}

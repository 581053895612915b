//! Inputs the fuzz targets once crashed on (`tests/fuzz_regressions/<target>/`), fed to the same
//! functions the fuzz targets run (`fuzz/src/harness.rs`), so a fixed crash stays fixed; and the
//! fuzz seeds (`fuzz/seeds/<target>/`), so the harness itself keeps working.

use std::path::Path;

#[path = "../../fuzz/src/harness.rs"]
mod harness;

/// Feed every file of `<root>/<target>/` to `run`; how many there were.
fn replay(root: &str, target: &str, run: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(root)
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in &paths {
        let data = std::fs::read(path).unwrap();
        let outcome = std::panic::catch_unwind(|| run(&data));
        assert!(outcome.is_ok(), "{} panics again", path.display());
    }
    paths.len()
}

#[test]
fn manifest_inputs() {
    replay("tests/fuzz_regressions", "manifest", harness::manifest);
    let seeds = replay("fuzz/seeds", "manifest", harness::manifest);
    assert!(seeds > 0, "no seeds for manifest");
}

#[test]
fn journal_inputs() {
    replay("tests/fuzz_regressions", "journal", harness::journal);
    let seeds = replay("fuzz/seeds", "journal", harness::journal);
    assert!(seeds > 0, "no seeds for journal");
}

#[test]
fn classify_inputs() {
    replay("tests/fuzz_regressions", "classify", harness::classify);
    let seeds = replay("fuzz/seeds", "classify", harness::classify);
    assert!(seeds > 0, "no seeds for classify");
}

#[test]
fn form_inputs() {
    replay("tests/fuzz_regressions", "form", harness::form);
    let seeds = replay("fuzz/seeds", "form", harness::form);
    assert!(seeds > 0, "no seeds for form");
}

//! The fuzz corpora (`fuzz/corpus/scim_filter`, `fuzz/corpus/scim_patch_path`),
//! replayed as an ordinary test: no input may panic the parsers or what consumes
//! them. What a fuzzing run finds is minimised and added there.

use std::path::PathBuf;

fn corpus(name: &str) -> Vec<(PathBuf, String)> {
    let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(name);
    let mut inputs: Vec<(PathBuf, String)> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| panic!("{}: {error}", directory.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a corpus file");
            (path, String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect();
    inputs.sort();
    inputs
}

#[test]
fn the_filter_corpus_replays() {
    let inputs = corpus("scim_filter");
    assert!(inputs.len() >= 20, "the seeds are there");
    let parsed = inputs
        .iter()
        .filter(|(_, text)| portcullis_scim::fuzzing::filter(text))
        .count();
    // The last seeds are malformed on purpose.
    assert!(
        parsed >= 20 && parsed < inputs.len(),
        "{parsed} of {}",
        inputs.len()
    );
}

#[test]
fn the_patch_path_corpus_replays() {
    let inputs = corpus("scim_patch_path");
    assert!(inputs.len() >= 10);
    let parsed = inputs
        .iter()
        .filter(|(_, text)| portcullis_scim::fuzzing::patch_path(text))
        .count();
    assert!(
        parsed >= 10 && parsed < inputs.len(),
        "{parsed} of {}",
        inputs.len()
    );
}

//! Replays the fuzz target's committed corpus (`fuzz/corpus/tabular_rows/`) through the
//! row parser: no input may panic.

use std::path::Path;

#[test]
fn the_fuzz_corpus_parses_without_panicking() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/tabular_rows");
    let mut n = 0;
    for entry in std::fs::read_dir(&corpus).expect("the corpus is committed") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        portcullis_tabular::fuzz_rows(&data);
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus files");
}

//! Replays the fuzz target's committed corpus (`fuzz/corpus/tabular_rows/`) through the
//! row parser and the target's oracle (the row limit is exact): no input may panic.

use std::path::Path;

#[test]
fn the_fuzz_corpus_parses_without_panicking() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/tabular_rows");
    let (mut n, mut with_rows, mut refused) = (0, 0, 0);
    for entry in std::fs::read_dir(&corpus).expect("the corpus is committed") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        match portcullis_tabular::fuzz_rows(&data) {
            Some(0) => {}
            Some(_) => with_rows += 1,
            None => refused += 1,
        }
        n += 1;
    }
    assert!(n >= 10, "only {n} corpus files");
    // The oracle runs only on files that parse into rows, and the refusals are the
    // rest of what the corpus is for: both must be there.
    assert!(
        with_rows >= 5 && refused >= 1,
        "{with_rows} files with rows and {refused} refused of {n}"
    );
}

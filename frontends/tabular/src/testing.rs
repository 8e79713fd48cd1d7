//! Hostile files for tests (feature `testing`): what the bad-input suites of this
//! crate and of the end-to-end tests feed the importer. Not part of the shipping API.

use std::io::{Cursor, Read, Write};

/// `workbook` (a real XLSX) with its shared-string table replaced by one holding the
/// header `Username` and one string of `megabytes` MiB of `A`: a few hundred KB
/// zipped, hundreds of MB unpacked (a decompression bomb).
///
/// # Panics
///
/// When `workbook` is not a zip holding `xl/sharedStrings.xml`.
pub fn xlsx_with_huge_shared_string(workbook: &[u8], megabytes: usize) -> Vec<u8> {
    let mut archive = zip::ZipArchive::new(Cursor::new(workbook)).expect("a zip archive");
    let mut out = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let mut replaced = false;
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).expect("a part");
        let name = file.name().to_owned();
        out.start_file(name.as_str(), options).expect("a part");
        if name == "xl/sharedStrings.xml" {
            replaced = true;
            out.write_all(
                br#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="2" uniqueCount="2"><si><t>Username</t></si><si><t>"#,
            )
            .expect("in memory");
            let chunk = vec![b'A'; 1024 * 1024];
            for _ in 0..megabytes {
                out.write_all(&chunk).expect("in memory");
            }
            out.write_all(b"</t></si></sst>").expect("in memory");
        } else {
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes).expect("a part");
            out.write_all(&bytes).expect("in memory");
        }
    }
    assert!(replaced, "the workbook has a shared-string table");
    out.finish().expect("in memory").into_inner()
}

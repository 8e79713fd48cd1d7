//! Reading a file into a table of cells: the header and the rows, each row with its
//! number as a spreadsheet shows it. Everything about encodings, CSV syntax and
//! workbook structure is decided here; what a cell means is `cell.rs`'s business.

use std::io::Cursor;

use calamine::{Data, Reader, SheetType, Xlsx};
use portcullis_engine::Time;

use crate::error::{Problem, Problems};
use crate::kind::{Format, ParseOptions};

/// One cell as the file holds it. CSV cells are always text (or empty).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cell {
    Empty,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// An XLSX date cell, read as UTC (a workbook holds no time zone).
    Date(Time),
    /// A cell no column accepts (a duration, an error value such as `#N/A`): why.
    Refused(String),
}

pub(crate) struct TableRow {
    pub(crate) line: usize,
    pub(crate) cells: Vec<Cell>,
}

pub(crate) struct Table {
    /// The header's text, one per column, in file order.
    pub(crate) headers: Vec<String>,
    pub(crate) header_line: usize,
    pub(crate) rows: Vec<TableRow>,
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// An OLE compound file: a `.xls` workbook, or an encrypted `.xlsx`.
const OLE_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0";

/// Reads `bytes` as `format`. `None` when the file cannot be read as a table at all;
/// the reasons are in `problems`.
pub(crate) fn read(
    format: Format,
    bytes: &[u8],
    options: &ParseOptions,
    problems: &mut Problems,
) -> Option<Table> {
    match format {
        Format::Csv => read_csv(bytes, options, problems),
        Format::Xlsx => read_xlsx(bytes, options, problems),
    }
}

fn refuse(problems: &mut Problems, message: impl Into<String>) -> Option<Table> {
    problems.push(Problem::file(message));
    None
}

fn is_blank(cells: &[Cell]) -> bool {
    cells.iter().all(|cell| match cell {
        Cell::Empty => true,
        Cell::Text(text) => text.trim().is_empty(),
        _ => false,
    })
}

fn read_csv(bytes: &[u8], options: &ParseOptions, problems: &mut Problems) -> Option<Table> {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return refuse(
            problems,
            "the file is UTF-16 (or UTF-32) encoded; save it as UTF-8 CSV",
        );
    }
    if bytes.starts_with(b"\x00\x00\xFE\xFF") {
        return refuse(problems, "the file is UTF-32 encoded; save it as UTF-8 CSV");
    }
    if bytes.starts_with(ZIP_MAGIC) {
        return refuse(
            problems,
            "the file is an XLSX workbook (a zip archive), not CSV; import it as xlsx",
        );
    }
    if bytes.starts_with(OLE_MAGIC) {
        return refuse(
            problems,
            "the file is an old Excel (.xls) workbook, not CSV; save it as CSV UTF-8 or .xlsx",
        );
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    if bytes.contains(&0) {
        return refuse(
            problems,
            "the file holds NUL bytes, so it is not UTF-8 text (UTF-16 without a byte-order mark?); save it as UTF-8 CSV",
        );
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return refuse(problems, "the file is empty: it needs a header row");
    }

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut headers: Option<Vec<String>> = None;
    let mut rows = Vec::new();
    let mut line = 0usize;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // Reading from a byte slice, the only errors would be I/O ones.
            Err(error) => return refuse(problems, format!("malformed CSV: {error}")),
        }
        line += 1;
        if record.len() > MAX_COLUMNS {
            return refuse(
                problems,
                format!(
                    "row {line} has more than {MAX_COLUMNS} values; at most {MAX_COLUMNS} columns are read"
                ),
            );
        }
        if record.iter().any(|field| field.len() > MAX_VALUE_BYTES) {
            return refuse(
                problems,
                format!("row {line} holds a value longer than {MAX_VALUE_BYTES} bytes"),
            );
        }
        let start = record.position().map_or(0, |p| p.byte() as usize);
        let end = (reader.position().byte() as usize).min(bytes.len());
        let raw = &bytes[start.min(end)..end];
        // INVARIANT: in well-formed CSV, quotes pair up within a record (opening and
        // closing, or doubled inside a quoted value). An odd count is a stray quote,
        // or a quoted value that is never closed and swallowed the rest of the file.
        if raw.iter().filter(|&&b| b == b'"').count() % 2 == 1 {
            problems.push(Problem::row(
                line,
                "malformed CSV: a stray or unclosed double quote (quote the whole value and double the quotes inside it: \"say \"\"hi\"\"\")",
            ));
        }
        let mut cells = Vec::with_capacity(record.len());
        for (index, field) in record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok("") => cells.push(Cell::Empty),
                Ok(text) => cells.push(Cell::Text(text.to_owned())),
                Err(_) => {
                    let column = headers
                        .as_ref()
                        .and_then(|h| h.get(index))
                        .cloned()
                        .unwrap_or_else(|| format!("#{}", index + 1));
                    problems.push(Problem::cell(
                        line,
                        &column,
                        "the file is not UTF-8 (this is the first invalid byte); save it as UTF-8 CSV",
                    ));
                    return None;
                }
            }
        }
        match &headers {
            None => {
                let texts: Vec<String> = cells
                    .into_iter()
                    .map(|cell| match cell {
                        Cell::Text(text) => text,
                        _ => String::new(),
                    })
                    .collect();
                if texts.len() == 1 && (texts[0].contains(';') || texts[0].contains('\t')) {
                    return refuse(
                        problems,
                        "the header is one column holding `;` or tabs: the file must be comma-separated",
                    );
                }
                headers = Some(texts);
            }
            Some(header) => {
                let mut cells = cells;
                if is_blank(&cells) {
                    continue;
                }
                if rows.len() >= options.max_rows {
                    return refuse(
                        problems,
                        format!("the file has more than {} rows", options.max_rows),
                    );
                }
                // Spreadsheets sometimes pad rows with empty values: drop those.
                while cells.len() > header.len() && cells.last() == Some(&Cell::Empty) {
                    cells.pop();
                }
                if cells.len() != header.len() {
                    problems.push(Problem::row(
                        line,
                        format!(
                            "malformed CSV: {} values where the header has {} columns",
                            cells.len(),
                            header.len()
                        ),
                    ));
                }
                rows.push(TableRow { line, cells });
            }
        }
    }
    let headers = headers?;
    Some(Table {
        headers,
        header_line: 1,
        rows,
    })
}

/// `A`, `B`, … `AA`: a column's letters.
fn column_letters(mut index: u32) -> String {
    let mut letters = Vec::new();
    loop {
        letters.push(b'A' + (index % 26) as u8);
        if index < 26 {
            break;
        }
        index = index / 26 - 1;
    }
    letters.reverse();
    String::from_utf8(letters).unwrap_or_default()
}

fn cell_name(row: u32, col: u32) -> String {
    format!("{}{}", column_letters(col), row + 1)
}

fn excel_time(datetime: &calamine::ExcelDateTime) -> Result<Time, String> {
    if datetime.is_duration() {
        return Err("a duration where a date is expected".to_owned());
    }
    let (year, month, day, hour, minute, second, milli) = datetime.to_ymd_hms_milli();
    let text =
        format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{milli:03}Z");
    text.parse()
        .map_err(|_| format!("the date cell holds `{text}`, which is not a valid date"))
}

fn convert(data: &Data) -> Cell {
    match data {
        Data::Empty => Cell::Empty,
        Data::String(text) if text.is_empty() => Cell::Empty,
        Data::String(text) => Cell::Text(text.clone()),
        Data::Int(value) => Cell::Int(*value),
        Data::Float(value) => Cell::Float(*value),
        Data::Bool(value) => Cell::Bool(*value),
        Data::DateTime(datetime) => match excel_time(datetime) {
            Ok(time) => Cell::Date(time),
            Err(message) => Cell::Refused(message),
        },
        Data::DateTimeIso(text) => {
            let parsed = text
                .parse::<Time>()
                .or_else(|_| format!("{text}Z").parse::<Time>());
            match parsed {
                Ok(time) => Cell::Date(time),
                Err(_) => Cell::Refused(format!("the date cell holds `{text}`")),
            }
        }
        Data::DurationIso(_) => Cell::Refused("a duration where a date is expected".to_owned()),
        Data::Error(error) => Cell::Refused(format!("the cell holds an error value ({error})")),
    }
}

fn read_xlsx(bytes: &[u8], options: &ParseOptions, problems: &mut Problems) -> Option<Table> {
    if bytes.starts_with(OLE_MAGIC) {
        return refuse(
            problems,
            "the file is an old Excel (.xls) workbook or an encrypted one; save it unencrypted as .xlsx",
        );
    }
    if !bytes.starts_with(ZIP_MAGIC) {
        let hint = if std::str::from_utf8(&bytes[..bytes.len().min(512)]).is_ok() {
            " (it looks like text: import it as csv)"
        } else {
            ""
        };
        return refuse(problems, format!("the file is not an XLSX workbook{hint}"));
    }
    // calamine reads the shared-string table whole when it opens a workbook: what the
    // parts unpack to is bounded first, by streaming each through a counter.
    if let Err(message) = check_unpacked_sizes(bytes, options) {
        return refuse(problems, message);
    }
    let mut workbook = match Xlsx::new(Cursor::new(bytes)) {
        Ok(workbook) => workbook,
        Err(error) => return refuse(problems, format!("cannot read the workbook: {error}")),
    };
    let sheets: Vec<String> = workbook
        .sheets_metadata()
        .iter()
        .filter(|sheet| sheet.typ == SheetType::WorkSheet)
        .map(|sheet| sheet.name.clone())
        .collect();
    let Some(first) = sheets.first().cloned() else {
        return refuse(problems, "the workbook has no worksheet");
    };
    // The first worksheet is read; any other must be empty, so no data is silently
    // left behind.
    let mut others = Vec::new();
    for name in &sheets[1..] {
        match sheet_has_data(&mut workbook, name) {
            Ok(false) => {}
            Ok(true) => others.push(format!("`{name}`")),
            Err(error) => {
                return refuse(problems, format!("cannot read sheet `{name}`: {error}"));
            }
        }
    }
    if !others.is_empty() {
        problems.push(Problem::file(format!(
            "the workbook has data on several sheets ({}); only the first sheet (`{first}`) is read, so move that data there or delete those sheets",
            others.join(", ")
        )));
    }
    let cells = match sheet_cells(&mut workbook, &first, options) {
        Ok(cells) => cells,
        Err(message) => return refuse(problems, message),
    };
    let Some(&(start_row, _, _)) = cells.first() else {
        return refuse(
            problems,
            format!("the sheet `{first}` is empty: it needs a header row"),
        );
    };
    let start_col = cells.iter().map(|c| c.1).min().unwrap_or(0);
    let end_col = cells.iter().map(|c| c.1).max().unwrap_or(0);
    let width = (end_col - start_col) as usize + 1;
    if width > MAX_COLUMNS {
        return refuse(
            problems,
            format!(
                "the sheet uses {width} columns ({}:{}); at most {MAX_COLUMNS} are read",
                column_letters(start_col),
                column_letters(end_col)
            ),
        );
    }
    let mut n_rows = 0usize;
    let mut last_row = None;
    for &(row, _, _) in &cells {
        if last_row != Some(row) {
            n_rows += 1;
            last_row = Some(row);
        }
    }
    if n_rows.saturating_mul(width) > cell_budget(options) {
        return refuse(
            problems,
            format!(
                "the sheet's used area is {n_rows} rows by {width} columns, more than {} cells; delete the stray cells far to the right",
                cell_budget(options)
            ),
        );
    }
    // Rows as spreadsheets number them, each as wide as the used area.
    let mut table_rows: Vec<(u32, Vec<Cell>)> = Vec::new();
    for (row, col, data) in cells {
        if table_rows.last().is_none_or(|(last, _)| *last != row) {
            table_rows.push((row, vec![Cell::Empty; width]));
        }
        if let Some((_, row_cells)) = table_rows.last_mut() {
            row_cells[(col - start_col) as usize] = convert(&data);
        }
    }
    let mut table_rows = table_rows.into_iter();
    let (_, header_cells) = table_rows.next()?;
    let headers: Vec<String> = header_cells
        .iter()
        .map(|cell| match cell {
            Cell::Text(text) => text.clone(),
            Cell::Int(value) => value.to_string(),
            _ => String::new(),
        })
        .collect();
    let header_of = |col: u32| -> String {
        let index = col.checked_sub(start_col).map(|i| i as usize);
        index
            .and_then(|i| headers.get(i))
            .filter(|h| !h.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| column_letters(col))
    };

    // Formulas and merged cells are looked for in the raw XML first: most workbooks
    // have neither, and calamine's formula reader expands a shared formula over its
    // whole declared range, which a hostile file can make enormous.
    let scan = match scan_worksheets(bytes) {
        Ok(scan) => scan,
        Err(message) => return refuse(problems, format!("cannot read the workbook: {message}")),
    };
    if scan.shared_formulas {
        problems.push(Problem::file(
            "the workbook holds formulas (filled down or shared); formulas are not accepted, paste their values instead",
        ));
    } else if scan.formulas {
        match sheet_formulas(&mut workbook, &first) {
            Ok(formulas) => {
                for (row, col, formula) in formulas {
                    problems.push(Problem::cell(
                        row as usize + 1,
                        &header_of(col),
                        format!(
                            "cell {} holds a formula (`={formula}`); formulas are not accepted, paste its value instead",
                            cell_name(row, col)
                        ),
                    ));
                }
            }
            Err(error) => {
                return refuse(
                    problems,
                    format!("cannot read the formulas of `{first}`: {error}"),
                );
            }
        }
    }
    if scan.merged_cells {
        match workbook.worksheet_merge_cells(&first) {
            Some(Ok(regions)) => {
                for region in regions {
                    let (top, left) = region.start;
                    let (bottom, right) = region.end;
                    problems.push(Problem::cell(
                        top as usize + 1,
                        &header_of(left),
                        format!(
                            "cells {}:{} are merged; unmerge them and fill every cell",
                            cell_name(top, left),
                            cell_name(bottom, right)
                        ),
                    ));
                }
            }
            Some(Err(error)) => {
                return refuse(
                    problems,
                    format!("cannot read the merged cells of `{first}`: {error}"),
                );
            }
            None => {}
        }
    }

    let mut rows = Vec::with_capacity(table_rows.len());
    for (row, cells) in table_rows {
        if is_blank(&cells) {
            continue;
        }
        rows.push(TableRow {
            line: row as usize + 1,
            cells,
        });
    }
    Some(Table {
        headers,
        header_line: start_row as usize + 1,
        rows,
    })
}

/// The longest value one CSV cell may hold. Descriptions are the longest values a
/// sheet has; a longer one is a mistake or an attack.
pub(crate) const MAX_VALUE_BYTES: usize = 64 * 1024;

/// The most a part of a workbook may unpack to, as a multiple of its packed size, once
/// it is larger than [`RATIO_FREE_BYTES`]. Spreadsheet XML packs about tenfold; a
/// decompression bomb packs a thousandfold.
const MAX_INFLATE_RATIO: u64 = 100;

/// Parts that unpack to no more than this are not held to [`MAX_INFLATE_RATIO`].
const RATIO_FREE_BYTES: u64 = 1024 * 1024;

/// The most parts a workbook may hold (a workbook of one sheet has about ten).
const MAX_PARTS: usize = 10_000;

/// Unpacks every part of the workbook into a counter (nothing is kept) and refuses it
/// when a part unpacks to more than [`MAX_INFLATE_RATIO`] times its packed size, or
/// all parts together to more than `options.max_unpacked_bytes`. The sizes the zip
/// directory declares are not trusted: the bytes are counted.
fn check_unpacked_sizes(bytes: &[u8], options: &ParseOptions) -> Result<(), String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|error| format!("cannot read the workbook: {error}"))?;
    if archive.len() > MAX_PARTS {
        return Err(format!(
            "the workbook holds {} parts; at most {MAX_PARTS} are read",
            archive.len()
        ));
    }
    let total_limit = options.max_unpacked_bytes;
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let file = archive
            .by_index(index)
            .map_err(|error| format!("cannot read the workbook: {error}"))?;
        let name = file.name().to_owned();
        let ratio_limit = file
            .compressed_size()
            .max(1)
            .saturating_mul(MAX_INFLATE_RATIO)
            .max(RATIO_FREE_BYTES);
        let left = total_limit.saturating_sub(total);
        let shared_strings = name.eq_ignore_ascii_case("xl/sharedStrings.xml");
        let limit = if shared_strings {
            ratio_limit.min(left).min(MAX_SHARED_STRINGS_BYTES)
        } else {
            ratio_limit.min(left)
        };
        let mut counter = StringCounter::default();
        let unpacked = std::io::copy(&mut file.take(limit + 1), &mut counter)
            .map_err(|error| format!("cannot read the workbook part `{name}`: {error}"))?;
        if shared_strings && unpacked <= limit && counter.strings > cell_budget(options) {
            return Err(format!(
                "the workbook's shared-string table holds more than {} strings",
                cell_budget(options)
            ));
        }
        if shared_strings && unpacked > limit && limit == MAX_SHARED_STRINGS_BYTES {
            return Err(format!(
                "the workbook's shared-string table unpacks to more than {MAX_SHARED_STRINGS_BYTES} bytes"
            ));
        }
        if unpacked > limit {
            return Err(if limit == ratio_limit {
                format!(
                    "the workbook part `{name}` unpacks to more than {MAX_INFLATE_RATIO} times its packed size (a decompression bomb?)"
                )
            } else {
                format!("the workbook unpacks to more than {total_limit} bytes")
            });
        }
        total += unpacked;
    }
    Ok(())
}

/// The most bytes the shared-string table may unpack to: calamine holds it whole.
const MAX_SHARED_STRINGS_BYTES: u64 = 256 * 1024 * 1024;

/// Counts the `<si>` elements (with any namespace prefix) of the XML written to it,
/// keeping nothing else.
#[derive(Default)]
struct StringCounter {
    strings: usize,
    /// The last bytes of the previous chunk, for an element cut in two.
    tail: [u8; 3],
}

impl std::io::Write for StringCounter {
    fn write(&mut self, chunk: &[u8]) -> std::io::Result<usize> {
        let mut window = self.tail;
        for &byte in chunk {
            // `<si` or `:si`, then `>`, a space or `/`.
            if matches!(window, [b'<' | b':', b's', b'i'])
                && matches!(byte, b'>' | b' ' | b'/' | b'\t' | b'\n' | b'\r')
            {
                self.strings += 1;
            }
            window = [window[1], window[2], byte];
        }
        self.tail = window;
        Ok(chunk.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The widest used area of a sheet that is read. The widest kind has 14 columns, and
/// other exports add a few ignored ones; a hostile file must not make each row huge.
pub(crate) const MAX_COLUMNS: usize = 1_000;

/// The most cells a sheet's rows may hold, counted as rows × used width: 32 per row
/// allowed (a row of the widest kind has 14).
fn cell_budget(options: &ParseOptions) -> usize {
    options.max_rows.saturating_add(1).saturating_mul(32)
}

/// The most formulas listed from one sheet (each is a problem).
const MAX_FORMULAS: usize = 1_000;

type Workbook<'a> = Xlsx<Cursor<&'a [u8]>>;

/// Whether a worksheet holds any value, reading it cell by cell until one does.
fn sheet_has_data(workbook: &mut Workbook<'_>, name: &str) -> Result<bool, calamine::XlsxError> {
    let mut reader = workbook.worksheet_cells_reader(name)?;
    while let Some(cell) = reader.next_cell()? {
        if !is_empty(&Data::from(cell.get_value().clone())) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn is_empty(data: &Data) -> bool {
    match data {
        Data::Empty => true,
        Data::String(text) => text.is_empty(),
        _ => false,
    }
}

/// The non-empty cells of a worksheet as (row, column, value), sorted by position,
/// read as a stream. A sheet's used area is never allocated whole (calamine's ranges
/// are dense: two cells at opposite corners of a sheet would be 17 billion cells), and
/// a sheet with more rows than `options.max_rows` (plus the header) is refused as soon
/// as that shows.
fn sheet_cells(
    workbook: &mut Workbook<'_>,
    name: &str,
    options: &ParseOptions,
) -> Result<Vec<(u32, u32, Data)>, String> {
    let mut reader = workbook
        .worksheet_cells_reader(name)
        .map_err(|error| format!("cannot read sheet `{name}`: {error}"))?;
    let mut cells = Vec::new();
    let mut rows = std::collections::HashSet::new();
    let mut last_row = None;
    let too_many = || format!("the sheet has more than {} rows", options.max_rows);
    while let Some(cell) = reader
        .next_cell()
        .map_err(|error| format!("cannot read sheet `{name}`: {error}"))?
    {
        let data = Data::from(cell.get_value().clone());
        if is_empty(&data) {
            continue;
        }
        let (row, col) = cell.get_position();
        // Cells come row by row: only a row change needs the set.
        if last_row != Some(row) {
            last_row = Some(row);
            if rows.insert(row) && rows.len() > options.max_rows.saturating_add(1) {
                return Err(too_many());
            }
        }
        if cells.len() >= cell_budget(options) {
            return Err(format!(
                "the sheet has more than {} filled cells",
                cell_budget(options)
            ));
        }
        cells.push((row, col, data));
    }
    cells.sort_by_key(|&(row, col, _)| (row, col));
    Ok(cells)
}

/// A worksheet's formulas as (row, column, formula), at most [`MAX_FORMULAS`], read as
/// a stream (calamine's formula range is dense, as [`sheet_cells`] explains).
fn sheet_formulas(
    workbook: &mut Workbook<'_>,
    name: &str,
) -> Result<Vec<(u32, u32, String)>, calamine::XlsxError> {
    let mut reader = workbook.worksheet_cells_reader(name)?;
    let mut formulas = Vec::new();
    while let Some(cell) = reader.next_formula()? {
        if cell.get_value().is_empty() {
            continue;
        }
        let (row, col) = cell.get_position();
        formulas.push((row, col, cell.get_value().clone()));
        if formulas.len() >= MAX_FORMULAS {
            break;
        }
    }
    formulas.sort_by_key(|&(row, col, _)| (row, col));
    Ok(formulas)
}

/// What the raw XML of a workbook's worksheets holds.
#[derive(Debug, Default, PartialEq, Eq)]
struct Scan {
    formulas: bool,
    shared_formulas: bool,
    merged_cells: bool,
}

/// Looks through every worksheet's XML for formula elements (`<f>`, with any
/// namespace prefix) and merged cells.
fn scan_worksheets(bytes: &[u8]) -> Result<Scan, String> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| e.to_string())?;
    let mut scan = Scan::default();
    let mut xml = Vec::new();
    for index in 0..archive.len() {
        let mut file = archive.by_index(index).map_err(|e| e.to_string())?;
        let name = file.name().to_ascii_lowercase();
        if !(name.starts_with("xl/worksheets/") && name.ends_with(".xml")) {
            continue;
        }
        xml.clear();
        file.read_to_end(&mut xml).map_err(|e| e.to_string())?;
        scan_xml(&xml, &mut scan);
    }
    Ok(scan)
}

fn scan_xml(xml: &[u8], scan: &mut Scan) {
    let mut rest = xml;
    while let Some(open) = rest.iter().position(|&b| b == b'<') {
        rest = &rest[open + 1..];
        // The element's name, past any namespace prefix.
        let end = rest
            .iter()
            .position(|&b| {
                b == b' ' || b == b'>' || b == b'/' || b == b'\t' || b == b'\n' || b == b'\r'
            })
            .unwrap_or(rest.len());
        let tag = &rest[..end];
        let local = match tag.iter().rposition(|&b| b == b':') {
            Some(colon) => &tag[colon + 1..],
            None => tag,
        };
        match local {
            b"f" => {
                scan.formulas = true;
                let close = rest.iter().position(|&b| b == b'>').unwrap_or(rest.len());
                let attributes = &rest[end..close];
                if attributes
                    .windows(8)
                    .any(|w| w == b"\"shared\"" || w == b"'shared'")
                {
                    scan.shared_formulas = true;
                }
            }
            b"mergeCell" => scan.merged_cells = true,
            _ => {}
        }
        rest = &rest[end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scan_finds_formulas_with_any_prefix() {
        let scan = |xml: &str| {
            let mut scan = Scan::default();
            scan_xml(xml.as_bytes(), &mut scan);
            scan
        };
        assert_eq!(scan("<c r=\"A1\"><v>1</v></c><foo/>"), Scan::default());
        assert!(scan("<c><f>A1+1</f></c>").formulas);
        assert!(scan("<x:c><x:f>A1</x:f></x:c>").formulas);
        let shared = scan("<c><f t=\"shared\" ref=\"A1:XFD1048576\" si=\"0\">A1</f></c>");
        assert!(shared.formulas && shared.shared_formulas);
        assert!(
            scan("<mergeCells count=\"1\"><mergeCell ref=\"A1:B1\"/></mergeCells>").merged_cells
        );
        assert!(!scan("<fill/><font/>").formulas);
    }

    #[test]
    fn column_letters_count_like_spreadsheets() {
        assert_eq!(column_letters(0), "A");
        assert_eq!(column_letters(25), "Z");
        assert_eq!(column_letters(26), "AA");
        assert_eq!(column_letters(27), "AB");
        assert_eq!(column_letters(701), "ZZ");
        assert_eq!(column_letters(702), "AAA");
        assert_eq!(cell_name(4, 2), "C5");
    }
}

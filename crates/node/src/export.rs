//! `GET /v1/export?table=…&format=csv|xlsx`: every table the console shows,
//! as a CSV file (UTF-8 with a byte-order mark, so Excel reads the Chinese
//! headers) or an Excel workbook (rust_xlsxwriter), the format county offices
//! file their reports in.
//!
//! Each table needs the permission of the view it comes from. Exports never
//! carry personal tiers: a person is named by the person key only (the
//! timeline lists kinds, times and localities), so a file left on a shared
//! office computer discloses no name or ID number.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use yipan_access::{Caller, Permission};
use yipan_projections::calendar::date_of;

use crate::api::error;

/// One cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Text.
    Text(String),
    /// A number.
    Number(f64),
    /// Nothing.
    Empty,
}

impl From<&str> for Cell {
    fn from(s: &str) -> Cell {
        Cell::Text(s.to_string())
    }
}

impl From<String> for Cell {
    fn from(s: String) -> Cell {
        Cell::Text(s)
    }
}

impl From<u64> for Cell {
    fn from(n: u64) -> Cell {
        Cell::Number(n as f64)
    }
}

impl From<i64> for Cell {
    fn from(n: i64) -> Cell {
        Cell::Number(n as f64)
    }
}

impl From<f64> for Cell {
    fn from(n: f64) -> Cell {
        Cell::Number(n)
    }
}

impl<T: Into<Cell>> From<Option<T>> for Cell {
    fn from(v: Option<T>) -> Cell {
        v.map(Into::into).unwrap_or(Cell::Empty)
    }
}

/// A table: a sheet name, column headers and rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// File and sheet name stem, e.g. `cases`.
    pub name: String,
    /// Column headers.
    pub headers: Vec<String>,
    /// Rows, each as long as `headers`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// A table with these headers.
    pub fn new(name: &str, headers: &[&str]) -> Table {
        Table { name: name.into(), headers: headers.iter().map(|h| h.to_string()).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<Cell>) {
        self.rows.push(cells);
    }
}

/// The tables and the permission each needs.
pub const TABLES: &[(&str, Permission)] = &[
    ("scorecard", Permission::ReadViews),
    ("trend", Permission::ReadViews),
    ("counterparts", Permission::ReadViews),
    ("cases", Permission::ReadViews),
    ("flows", Permission::ReadViews),
    ("card", Permission::ReadViews),
    ("timeline", Permission::ReadEvents),
    ("quarantine", Permission::ReadStatus),
];

/// Whether `caller` may export `table`; the refusal names what is wrong.
pub fn check(table: &str, caller: &Caller) -> Option<Response> {
    match TABLES.iter().find(|(t, _)| *t == table) {
        None => Some(error(
            StatusCode::BAD_REQUEST,
            format!(
                "table: `{}` is not one of {}",
                yipan_core::clip(table),
                TABLES.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ")
            ),
        )),
        Some((_, p)) if !caller.role.allows(*p) => {
            Some(error(StatusCode::FORBIDDEN, format!("role `{}` may not export `{table}`", caller.role)))
        }
        Some(_) => None,
    }
}

/// CSV text (RFC 4180, CRLF line ends) with a UTF-8 byte-order mark.
pub fn to_csv(t: &Table) -> Result<Vec<u8>, String> {
    let mut w = csv::WriterBuilder::new().terminator(csv::Terminator::CRLF).from_writer(vec![0xEF, 0xBB, 0xBF]);
    w.write_record(&t.headers).map_err(|e| e.to_string())?;
    for row in &t.rows {
        w.write_record(row.iter().map(|c| match c {
            // A spreadsheet runs a cell that starts like a formula (text a peer may
            // have chosen, e.g. a claimed author): such text is quoted as text.
            Cell::Text(s) if s.starts_with(['=', '+', '-', '@', '\t', '\r']) => format!("'{s}"),
            Cell::Text(s) => s.clone(),
            Cell::Number(n) => number_text(*n),
            Cell::Empty => String::new(),
        }))
        .map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

/// An Excel workbook with one sheet: bold frozen header row, filter, widths.
pub fn to_xlsx(t: &Table) -> Result<Vec<u8>, String> {
    use rust_xlsxwriter::{Format, Workbook};
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name(&t.name).map_err(|e| e.to_string())?;
    let bold = Format::new().set_bold();
    let mut widths: Vec<usize> = t.headers.iter().map(|h| display_width(h)).collect();
    for (c, h) in t.headers.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, h, &bold).map_err(|e| e.to_string())?;
    }
    for (r, row) in t.rows.iter().enumerate() {
        let r = (r + 1) as u32;
        for (c, cell) in row.iter().enumerate() {
            match cell {
                Cell::Text(s) => {
                    sheet.write_string(r, c as u16, s).map_err(|e| e.to_string())?;
                    if let Some(w) = widths.get_mut(c) {
                        *w = (*w).max(display_width(s));
                    }
                }
                Cell::Number(n) => {
                    sheet.write_number(r, c as u16, *n).map_err(|e| e.to_string())?;
                }
                Cell::Empty => {}
            }
        }
    }
    for (c, w) in widths.iter().enumerate() {
        sheet.set_column_width(c as u16, (*w as f64 + 2.0).min(60.0)).map_err(|e| e.to_string())?;
    }
    if !t.headers.is_empty() {
        sheet.set_freeze_panes(1, 0).map_err(|e| e.to_string())?;
        sheet.autofilter(0, 0, t.rows.len() as u32, (t.headers.len() - 1) as u16).map_err(|e| e.to_string())?;
    }
    book.save_to_buffer().map_err(|e| e.to_string())
}

/// Column width in Excel units: CJK characters count double.
fn display_width(s: &str) -> usize {
    s.chars().map(|c| if (c as u32) >= 0x2E80 { 2 } else { 1 }).sum()
}

/// The HTTP answer carrying `t` in `format`.
pub fn respond(t: &Table, format: &str, locality: yipan_core::Locality) -> Response {
    let (bytes, mime, ext) = match format {
        "csv" => (to_csv(t), "text/csv; charset=utf-8", "csv"),
        "xlsx" => (to_xlsx(t), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"),
        other => {
            return error(StatusCode::BAD_REQUEST, format!("format: `{}` is not csv or xlsx", yipan_core::clip(other)))
        }
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("cannot write the {ext} file: {e}")),
    };
    let day = date_of(chrono::Utc::now());
    let name = format!("yipan-{}-{locality}-{day}.{ext}", t.name);
    let mut r = (StatusCode::OK, bytes).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::new("cases", &["类型", "截止日期", "超期天数"]);
        t.row(vec!["协查→反馈".into(), "2026-11-04".into(), Cell::from(26u64)]);
        t.row(vec!["a \"quoted\", comma".into(), Cell::Empty, Cell::from(0.5)]);
        t
    }

    #[test]
    fn csv_cells_that_look_like_formulas_stay_text() {
        let mut t = Table::new("quarantine", &["author"]);
        t.row(vec!["=HYPERLINK(\"http://x\")".into()]);
        t.row(vec!["@SUM(A1)".into()]);
        t.row(vec!["610112".into()]);
        let text = String::from_utf8(to_csv(&t).unwrap()).unwrap();
        assert!(text.contains("\"'=HYPERLINK(\"\"http://x\"\")\""), "{text}");
        assert!(text.contains("'@SUM(A1)") && text.contains("\r\n610112\r\n"), "{text}");
    }

    #[test]
    fn csv_has_a_bom_quotes_and_crlf() {
        let text = String::from_utf8(to_csv(&sample()).unwrap()).unwrap();
        assert!(text.starts_with('\u{feff}'));
        assert_eq!(
            text.trim_start_matches('\u{feff}'),
            "类型,截止日期,超期天数\r\n协查→反馈,2026-11-04,26\r\n\"a \"\"quoted\"\", comma\",,0.5\r\n"
        );
    }

    #[test]
    fn xlsx_opens_with_the_same_rows() {
        use calamine::{Data, Reader, Xlsx};
        let bytes = to_xlsx(&sample()).unwrap();
        let mut book: Xlsx<_> = calamine::open_workbook_from_rs(std::io::Cursor::new(bytes)).unwrap();
        let range = book.worksheet_range("cases").unwrap();
        let rows: Vec<Vec<Data>> = range.rows().map(|r| r.to_vec()).collect();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0][0], Data::String("类型".into()));
        assert_eq!(rows[1][0], Data::String("协查→反馈".into()));
        assert_eq!(rows[1][2], Data::Float(26.0));
        assert_eq!(rows[2][0], Data::String("a \"quoted\", comma".into()));
        assert_eq!(rows[2][1], Data::Empty);
    }
}

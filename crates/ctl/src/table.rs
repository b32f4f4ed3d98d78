//! Plain-text tables in kubectl's style: upper-case headers, columns
//! separated by at least three spaces, no borders, so `grep` and `awk`
//! work on the output.

use std::fmt;

/// Space between columns.
const GAP: usize = 3;

/// Rows under headers, rendered with aligned columns.
#[derive(Debug)]
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&'static str]) -> Table {
        Table { headers: headers.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; it must have one cell per header.
    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len(), "one cell per column");
        self.rows.push(row);
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let headers = self.headers.iter().map(|h| h.to_string()).collect::<Vec<_>>();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', width + GAP - cell.chars().count()));
            }
            writeln!(f, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell_plus_three_spaces() {
        let mut table = Table::new(&["MESH", "NAME", "AGE"]);
        table.push(vec!["default".into(), "web-1".into(), "5s".into()]);
        table.push(vec!["a".into(), "backend-with-long-name".into(), "3m".into()]);
        assert_eq!(
            table.to_string(),
            "MESH      NAME                     AGE\n\
             default   web-1                    5s\n\
             a         backend-with-long-name   3m\n"
        );
    }

    #[test]
    fn an_empty_table_prints_its_headers_and_empty_cells_trim_at_the_end() {
        assert_eq!(Table::new(&["NAME", "AGE"]).to_string(), "NAME   AGE\n");
        let mut table = Table::new(&["NAME", "TAGS"]);
        table.push(vec!["é".into(), String::new()]);
        assert_eq!(table.to_string(), "NAME   TAGS\né\n");
    }
}

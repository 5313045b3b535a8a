//! Positions of records in files, as written in logs and the dead-letter output.

use std::path::Path;

/// The display form of a file path used in positions (computed once per reader).
pub fn path_label(path: &Path) -> String {
    path.display().to_string()
}

/// `path:LINE`, LINE 1-based (JSON Lines, CSV).
pub fn line_position(path: &str, line: u64) -> String {
    format!("{path}:{line}")
}

/// `path:row N`, N the 0-based row of the file (Parquet).
pub fn row_position(path: &str, row: u64) -> String {
    format!("{path}:row {row}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(line_position("a/b.jsonl", 3), "a/b.jsonl:3");
        assert_eq!(row_position("x.parquet", 0), "x.parquet:row 0");
    }
}

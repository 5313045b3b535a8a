//! Hive-style partitions in folder names (`dt=2024-06-30/`, `category=books/`): the event-time
//! day a file holds and the category its rows default to.

use std::sync::Arc;

use chrono::NaiveDate;
use percent_encoding::percent_decode_str;

/// One day in milliseconds.
const DAY_MS: i64 = 86_400_000;

/// What the folders above a file say about its rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Partitions {
    /// `dt=YYYY-MM-DD` (or `date=`): every row's event time falls in this UTC day, as
    /// `[start, end)` epoch ms.
    pub day: Option<(i64, i64)>,
    /// `category=…` (percent-decoded, so `books%2Ffiction` is `books/fiction`): the category of
    /// rows that have none of their own (no category column, or a null one).
    pub category: Option<Arc<str>>,
}

impl Partitions {
    /// The partitions of a file under `folders` (outermost first; the innermost value of a key
    /// wins). Values that do not parse are ignored, like any other `key=value` folder.
    pub fn from_folders<S: AsRef<str>>(folders: &[S]) -> Self {
        let mut partitions = Partitions::default();
        for folder in folders {
            let Some((key, value)) = folder.as_ref().split_once('=') else {
                continue;
            };
            let Ok(value) = percent_decode_str(value).decode_utf8() else {
                continue;
            };
            match key.to_ascii_lowercase().as_str() {
                "dt" | "date" => {
                    if let Some(day) = parse_day(&value) {
                        partitions.day = Some(day);
                    }
                }
                "category" if !value.is_empty() => {
                    partitions.category = Some(Arc::from(value.as_ref()));
                }
                _ => {}
            }
        }
        partitions
    }

    /// The latest event time a row under these partitions can have, if they tell.
    pub fn max_ts(&self) -> Option<i64> {
        self.day.map(|(_, end)| end - 1)
    }
}

/// `YYYY-MM-DD` as the UTC day `[start, end)` in epoch ms.
fn parse_day(text: &str) -> Option<(i64, i64)> {
    let date = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok()?;
    let start = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some((start, start + DAY_MS))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_and_categories() {
        let p = Partitions::from_folders(&["lake", "category=books%2Ffiction", "dt=2024-06-30"]);
        let start = 1_719_705_600_000; // 2024-06-30T00:00:00Z
        assert_eq!(p.day, Some((start, start + DAY_MS)));
        assert_eq!(p.max_ts(), Some(start + DAY_MS - 1));
        assert_eq!(p.category.as_deref(), Some("books/fiction"));
        let p = Partitions::from_folders(&["DATE=2024-06-30", "region=eu", "category="]);
        assert_eq!(p.day.map(|d| d.0), Some(start));
        assert_eq!(p.category, None);
        // Unparsable values are just folder names.
        let p = Partitions::from_folders(&["dt=yesterday", "category=%FF", "x=y=z", "plain"]);
        assert_eq!(p, Partitions::default());
        assert_eq!(p.max_ts(), None);
        // The innermost value wins.
        let p = Partitions::from_folders(&["dt=2024-06-29", "dt=2024-06-30"]);
        assert_eq!(p.day.map(|d| d.0), Some(start));
    }
}

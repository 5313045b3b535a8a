//! Field rules shared by the file readers: from checked field values to a `Purchase`.

use std::fmt::Write as _;

use topsellers_model::{parse_time_ms, Purchase, PurchaseRef, RecordError};

use crate::bad::BadRecord;
use crate::intern::Interner;

/// Builds a purchase from field values that have their types already: checks `item_id` and
/// `category` and `ts`, interns the category, and returns `Ok(None)` for a zero quantity (ignored).
pub(crate) fn purchase(
    item_id: &str,
    category: &str,
    ts_ms: i64,
    quantity: i64,
    interner: &mut Interner,
) -> Result<Option<Purchase>, RecordError> {
    Ok(
        PurchaseRef::from_fields(item_id, category, ts_ms, quantity)?
            .map(|p| p.to_purchase(interner.intern(category))),
    )
}

/// Writes an integer item id as its decimal text into `buf` (reused) and returns it.
pub(crate) fn int_text(buf: &mut String, value: impl std::fmt::Display) -> &str {
    buf.clear();
    let _ = write!(buf, "{value}");
    buf
}

/// A `ts` given as text: RFC 3339 or integer epoch milliseconds; empty is missing.
pub(crate) fn ts_from_text(text: &str) -> Result<i64, RecordError> {
    if text.trim().is_empty() {
        return Err(RecordError::MissingField("ts"));
    }
    parse_time_ms(text).map_err(|_| RecordError::BadTimestamp(text.to_owned()))
}

/// A `quantity` given as text (CSV): empty means 1.
pub(crate) fn quantity_from_text(text: &str) -> Result<i64, RecordError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Ok(1);
    }
    trimmed
        .parse::<i64>()
        .map_err(|_| RecordError::BadQuantity(text.to_owned()))
}

/// Counters every reader keeps.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Tally {
    /// Records read (valid, bad or ignored).
    pub rows: u64,
    /// Zero-quantity records.
    pub ignored: u64,
}

/// Where one record's outcome goes.
pub(crate) fn deliver<T>(
    outcome: Result<Option<T>, RecordError>,
    tally: &mut Tally,
    bad: &mut Vec<BadRecord>,
    on_bad: impl FnOnce(RecordError) -> BadRecord,
) -> Option<T> {
    tally.rows += 1;
    match outcome {
        Ok(Some(purchase)) => Some(purchase),
        Ok(None) => {
            tally.ignored += 1;
            None
        }
        Err(error) => {
            bad.push(on_bad(error));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        let mut i = Interner::new();
        let p = purchase("x", "a/b", 5, 2, &mut i).unwrap().unwrap();
        assert_eq!(
            (&*p.item_id, &*p.category, p.ts_ms, p.quantity),
            ("x", "a/b", 5, 2)
        );
        assert_eq!(purchase("x", "a/b", 5, 0, &mut i), Ok(None));
        assert_eq!(
            purchase("", "a", 5, 1, &mut i),
            Err(RecordError::EmptyItemId)
        );
        assert_eq!(
            purchase("x", "/a", 5, 1, &mut i),
            Err(RecordError::EmptyCategorySegment)
        );
        assert_eq!(quantity_from_text(""), Ok(1));
        assert_eq!(quantity_from_text(" -2 "), Ok(-2));
        assert!(matches!(
            quantity_from_text("1.5"),
            Err(RecordError::BadQuantity(_))
        ));
        assert_eq!(ts_from_text("1000"), Ok(1000));
        assert_eq!(ts_from_text(""), Err(RecordError::MissingField("ts")));
        assert!(matches!(
            ts_from_text("soon"),
            Err(RecordError::BadTimestamp(_))
        ));
        let mut buf = String::new();
        assert_eq!(int_text(&mut buf, -7i64), "-7");
    }
}

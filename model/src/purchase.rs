//! A purchase event, its validation, and the reasons a record is bad.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::category::validate_category;
use crate::future::check_not_future;
pub use crate::record_error::RecordError;

/// Most bytes an `item_id` may have.
pub const MAX_ITEM_ID_BYTES: usize = 256;

/// One valid purchase (or, with a negative quantity, a return or cancellation).
///
/// Text fields are `Arc<str>` so that sources can intern them and the dataflow can clone them
/// without allocating.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Purchase {
    /// The item bought: 1..=256 bytes of UTF-8 (integer ids are kept as their decimal text).
    pub item_id: Arc<str>,
    /// The leaf category path, e.g. `books/fiction/scifi`.
    pub category: Arc<str>,
    /// Event time, Unix epoch milliseconds (not before 1970).
    pub ts_ms: i64,
    /// Units bought; negative for a return; never 0 (zero-quantity records are ignored).
    pub quantity: i64,
}

/// What the dataflow counts: a purchase without its quantity, which travels as the update's
/// (integer, exactly cancelling) difference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Event {
    /// The item bought.
    pub item_id: Arc<str>,
    /// The leaf category path.
    pub category: Arc<str>,
    /// Event time, Unix epoch milliseconds; it sets the weight, whatever the arrival time.
    pub ts_ms: i64,
}

/// A valid purchase borrowed from a reader's buffers: what hot paths that only sum purchases
/// (batch pre-aggregation) take, so that no text is allocated per record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PurchaseRef<'a> {
    /// The item bought (see [`Purchase::item_id`]).
    pub item_id: &'a str,
    /// The leaf category path.
    pub category: &'a str,
    /// Event time, Unix epoch milliseconds.
    pub ts_ms: i64,
    /// Units bought; never 0.
    pub quantity: i64,
}

impl<'a> PurchaseRef<'a> {
    /// Checks every rule of the data contract on a record's fields.
    ///
    /// Returns `Ok(None)` for a zero quantity, which the contract says to ignore.
    #[inline]
    pub fn from_fields(
        item_id: &'a str,
        category: &'a str,
        ts_ms: i64,
        quantity: i64,
    ) -> Result<Option<PurchaseRef<'a>>, RecordError> {
        let category_error = validate_category(category).err();
        Self::from_checked_category(item_id, category, category_error.as_ref(), ts_ms, quantity)
    }

    /// [`from_fields`](Self::from_fields) for a reader that checks each distinct category
    /// once (a Parquet dictionary): `category_error` is what [`validate_category`] found
    /// wrong with `category`, if anything.
    #[inline]
    pub fn from_checked_category(
        item_id: &'a str,
        category: &'a str,
        category_error: Option<&RecordError>,
        ts_ms: i64,
        quantity: i64,
    ) -> Result<Option<PurchaseRef<'a>>, RecordError> {
        check_item_id(item_id)?;
        if let Some(error) = category_error {
            return Err(error.clone());
        }
        check_ts(ts_ms)?;
        check_quantity(quantity)?;
        Ok((quantity != 0).then_some(PurchaseRef {
            item_id,
            category,
            ts_ms,
            quantity,
        }))
    }

    /// An owned copy, with the category given (shared, e.g. interned).
    pub fn to_purchase(&self, category: Arc<str>) -> Purchase {
        Purchase {
            item_id: self.item_id.into(),
            category,
            ts_ms: self.ts_ms,
            quantity: self.quantity,
        }
    }
}

impl Purchase {
    /// Builds a purchase from its fields, checking every rule of the data contract.
    ///
    /// Returns `Ok(None)` for a zero quantity, which the contract says to ignore.
    pub fn from_fields(
        item_id: &str,
        category: &str,
        ts_ms: i64,
        quantity: i64,
    ) -> Result<Option<Purchase>, RecordError> {
        Ok(
            PurchaseRef::from_fields(item_id, category, ts_ms, quantity)?
                .map(|p| p.to_purchase(category.into())),
        )
    }

    /// The purchase, borrowed.
    pub fn borrowed(&self) -> PurchaseRef<'_> {
        PurchaseRef {
            item_id: &self.item_id,
            category: &self.category,
            ts_ms: self.ts_ms,
            quantity: self.quantity,
        }
    }

    /// Splits into the dataflow's datum and its difference.
    pub fn into_update(self) -> (Event, i64) {
        let Purchase {
            item_id,
            category,
            ts_ms,
            quantity,
        } = self;
        (
            Event {
                item_id,
                category,
                ts_ms,
            },
            quantity,
        )
    }
}

/// Checks an `item_id`: 1..=256 bytes.
#[inline]
pub fn check_item_id(item_id: &str) -> Result<(), RecordError> {
    match item_id.len() {
        0 => Err(RecordError::EmptyItemId),
        n if n > MAX_ITEM_ID_BYTES => Err(RecordError::ItemIdTooLong(n)),
        _ => Ok(()),
    }
}

/// Checks an event time: not before 1970, since event time is the dataflow's (unsigned)
/// logical time, and not more than `scoring.max_future` ahead of the wall clock (see
/// [`crate::future`]).
#[inline]
pub fn check_ts(ts_ms: i64) -> Result<(), RecordError> {
    if ts_ms < 0 {
        return Err(RecordError::BadTimestamp(format!("{ts_ms} is before 1970")));
    }
    check_not_future(ts_ms)
}

/// Most units one record may carry either way: 2^53, so that every sum of quantities the
/// scoring keeps stays exact and a retraction (`-quantity`) never wraps.
pub const MAX_QUANTITY: i64 = 1 << 53;

/// Checks a quantity: |quantity| ≤ 2^53.
#[inline]
pub fn check_quantity(quantity: i64) -> Result<(), RecordError> {
    if quantity.unsigned_abs() > MAX_QUANTITY as u64 {
        return Err(RecordError::QuantityOutOfRange(quantity));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert!(Purchase::from_fields("i", "a/b", 0, 1).unwrap().is_some());
        assert_eq!(Purchase::from_fields("i", "a/b", 0, 0), Ok(None));
        assert_eq!(
            Purchase::from_fields("", "a", 0, 1),
            Err(RecordError::EmptyItemId)
        );
        assert_eq!(
            Purchase::from_fields(&"x".repeat(257), "a", 0, 1),
            Err(RecordError::ItemIdTooLong(257))
        );
        assert!(Purchase::from_fields(&"é".repeat(128), "a", 0, 1).is_ok());
        assert_eq!(
            Purchase::from_fields("i", "a//b", 0, 1),
            Err(RecordError::EmptyCategorySegment)
        );
        assert!(matches!(
            Purchase::from_fields("i", "a", -1, 1),
            Err(RecordError::BadTimestamp(_))
        ));
        assert!(Purchase::from_fields("i", "a", 0, 1 << 53)
            .unwrap()
            .is_some());
        assert!(Purchase::from_fields("i", "a", 0, -(1 << 53))
            .unwrap()
            .is_some());
        for q in [(1 << 53) + 1, -(1 << 53) - 1, i64::MAX, i64::MIN] {
            assert_eq!(
                Purchase::from_fields("i", "a", 0, q),
                Err(RecordError::QuantityOutOfRange(q))
            );
        }
        assert!(matches!(
            Purchase::from_fields("i", "a", i64::MAX, 1),
            Err(RecordError::TimestampInFuture { .. })
        ));
    }
}

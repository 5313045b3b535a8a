//! Why a record is bad: the reasons the data contract gives.

/// Why a record is bad. Bad records are counted, logged with their position and written to the
/// dead-letter output; they never change a score.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// The record is not valid JSON / CSV / Parquet, or not UTF-8.
    #[error("malformed record: {0}")]
    Malformed(String),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong type (e.g. `quantity` is a string).
    #[error("field `{field}` has the wrong type: {detail}")]
    WrongType {
        /// The field.
        field: &'static str,
        /// What was found instead.
        detail: String,
    },
    /// `item_id` is the empty string.
    #[error("item_id is empty")]
    EmptyItemId,
    /// `item_id` is longer than 256 bytes.
    #[error("item_id has {0} bytes (at most 256)")]
    ItemIdTooLong(usize),
    /// The category has an empty segment (empty path, leading/trailing or doubled `/`).
    #[error("category has an empty segment (no empty path, leading, trailing or doubled '/')")]
    EmptyCategorySegment,
    /// The category has more than 16 levels.
    #[error("category has {0} levels (at most 16)")]
    CategoryTooDeep(usize),
    /// The category has more than 1024 bytes.
    #[error("category has {0} bytes (at most 1024)")]
    CategoryTooLong(usize),
    /// `ts` is neither RFC 3339 nor integer epoch milliseconds.
    #[error("bad ts {0:?}: use RFC 3339 or integer epoch milliseconds")]
    BadTimestamp(String),
    /// `quantity` is not an integer.
    #[error("bad quantity {0:?}: must be an integer")]
    BadQuantity(String),
    /// `quantity` is beyond ±2^53 (the contract's bound: every sum stays exact).
    #[error("quantity {0} is out of range (|quantity| ≤ 2^53)")]
    QuantityOutOfRange(i64),
    /// `ts` is more than `scoring.max_future` ahead of the wall clock when the record is read.
    #[error("ts {ts} is {ahead_ms} ms ahead of the wall clock (at most scoring.max_future = {max_future_ms} ms)")]
    TimestampInFuture {
        /// The record's `ts`, as RFC 3339.
        ts: String,
        /// How far ahead of the wall clock it was when read.
        ahead_ms: i64,
        /// The bound.
        max_future_ms: i64,
    },
    /// A field appears twice in one record (which one counts would be a guess).
    #[error("field `{0}` appears twice")]
    DuplicateField(&'static str),
}

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
}

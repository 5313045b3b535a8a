//! The contract shared by every topsellers crate: purchases, validation, categories, decayed scores, top-k lists.
#![warn(missing_docs)]

pub mod category;
pub mod duration;
pub mod future;
pub mod profile;
pub mod purchase;
pub mod record_error;
pub mod score;
pub mod time;
pub mod topk;

pub use category::{ancestors, parent, validate_category};
pub use duration::{format_duration, parse_duration, parse_duration_ms, DurationError};
pub use future::{max_future, set_max_future, DEFAULT_MAX_FUTURE};
pub use profile::{HalfLife, Profile, ProfileError, Profiles, MAX_PROFILES};
pub use purchase::{Purchase, PurchaseRef, RecordError, MAX_ITEM_ID_BYTES, MAX_QUANTITY};
pub use score::{DecayedSum, ScoreKey, Weight};
pub use time::{format_rfc3339_ms, parse_time_ms, wall_clock_ms, TimeError};
pub use topk::{LatestLists, RankedItem, Snapshot, TopKList};

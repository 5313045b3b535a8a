//! Runnable drivers: see the `[[example]]` entries.

//! Backfill demo (placeholder, written next).
fn main() {}

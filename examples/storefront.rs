//! Storefront demo (placeholder, written next).
fn main() {}

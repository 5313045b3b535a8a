//! Category paths: validation and the roll-up to every ancestor and the root `""`.

use crate::record_error::RecordError;

/// Most levels a category path may have.
pub const MAX_CATEGORY_LEVELS: usize = 16;
/// Most bytes a category path may have.
pub const MAX_CATEGORY_BYTES: usize = 1024;

/// Checks a purchase's category against the data contract: segments joined by `/`, no empty
/// segment (so no leading, trailing or doubled `/`, and not the empty root itself), at most
/// [`MAX_CATEGORY_LEVELS`] levels and [`MAX_CATEGORY_BYTES`] bytes.
#[inline]
pub fn validate_category(path: &str) -> Result<(), RecordError> {
    if path.len() > MAX_CATEGORY_BYTES {
        return Err(RecordError::CategoryTooLong(path.len()));
    }
    // `/` is never part of a multi-byte UTF-8 character, so bytes will do. A segment is empty
    // where a `/` starts or ends the path or follows another. Counted without a branch per
    // byte: where the slashes fall differs from row to row, and a mispredicted branch per
    // slash was most of what checking a category cost.
    let bytes = path.as_bytes();
    let slash = |byte: &u8| u32::from(*byte == b'/');
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(RecordError::EmptyCategorySegment);
    };
    let doubled: u32 = bytes
        .iter()
        .zip(&bytes[1..])
        .map(|(a, b)| slash(a) & slash(b))
        .sum();
    if slash(first) | slash(last) | doubled != 0 {
        return Err(RecordError::EmptyCategorySegment);
    }
    let levels = 1 + bytes.iter().map(slash).sum::<u32>() as usize;
    if levels > MAX_CATEGORY_LEVELS {
        return Err(RecordError::CategoryTooDeep(levels));
    }
    Ok(())
}

/// The categories a purchase in `path` counts for: `path` itself, each ancestor, and the root
/// `""`, deepest first.
///
/// ```
/// let all: Vec<&str> = topsellers_model::ancestors("a/b/c").collect();
/// assert_eq!(all, ["a/b/c", "a/b", "a", ""]);
/// ```
pub fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut next = Some(path);
    std::iter::from_fn(move || {
        let current = next?;
        next = if current.is_empty() {
            None
        } else {
            Some(parent(current))
        };
        Some(current)
    })
}

/// The parent of a category: `a/b` for `a/b/c`, `""` (the root) for `a`, and `""` for the root.
pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(at) => &path[..at],
        None => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_of_root_and_leaf() {
        assert_eq!(ancestors("").collect::<Vec<_>>(), [""]);
        assert_eq!(ancestors("x").collect::<Vec<_>>(), ["x", ""]);
        assert_eq!(
            ancestors("bücher/roman").collect::<Vec<_>>(),
            ["bücher/roman", "bücher", ""]
        );
    }

    #[test]
    fn validation_equals_the_segment_by_segment_rule() {
        // The rule as written: split on `/`, no empty segment, a bounded depth.
        fn reference(path: &str) -> Result<(), RecordError> {
            if path.len() > MAX_CATEGORY_BYTES {
                return Err(RecordError::CategoryTooLong(path.len()));
            }
            if path.split('/').any(str::is_empty) {
                return Err(RecordError::EmptyCategorySegment);
            }
            let levels = path.split('/').count();
            if levels > MAX_CATEGORY_LEVELS {
                return Err(RecordError::CategoryTooDeep(levels));
            }
            Ok(())
        }
        let alphabet = ["a", "/", "é", "bc"];
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let len = (state >> 58) as usize;
            let path: String = (0..len)
                .map(|i| alphabet[((state >> (i % 60)) & 3) as usize])
                .collect();
            assert_eq!(validate_category(&path), reference(&path), "{path:?}");
        }
    }

    #[test]
    fn validation_rules() {
        assert!(validate_category("books/fiction/scifi").is_ok());
        assert!(validate_category("").is_err());
        assert!(validate_category("/books").is_err());
        assert!(validate_category("books/").is_err());
        assert!(validate_category("books//x").is_err());
        let deep = vec!["a"; 16].join("/");
        assert!(validate_category(&deep).is_ok());
        assert!(validate_category(&format!("{deep}/a")).is_err());
        assert!(validate_category(&"x".repeat(1024)).is_ok());
        assert!(validate_category(&"x".repeat(1025)).is_err());
    }
}

//! Where a file is: a local path, or an object in an S3 bucket (`s3://bucket/key`).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::object::Bucket;
use crate::error::Place;

/// A file to read: a local path or an object.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A local file.
    Local(PathBuf),
    /// An object in a bucket.
    Object(ObjectLocation),
}

/// An object: its bucket (with the client that reads it) and its key.
#[derive(Clone)]
pub struct ObjectLocation {
    /// The bucket and its client.
    pub bucket: Arc<Bucket>,
    /// The object's key (no leading `/`).
    pub key: object_store::path::Path,
}

impl ObjectLocation {
    /// `s3://bucket/key`.
    pub fn url(&self) -> String {
        format!("s3://{}/{}", self.bucket.name(), self.key)
    }
}

impl PartialEq for ObjectLocation {
    fn eq(&self, other: &Self) -> bool {
        self.bucket.name() == other.bucket.name() && self.key == other.key
    }
}

impl Eq for ObjectLocation {}

impl Hash for ObjectLocation {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bucket.name().hash(state);
        self.key.as_ref().hash(state);
    }
}

impl std::fmt::Debug for ObjectLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.url())
    }
}

impl Location {
    /// The local path, if this is a local file.
    pub fn local_path(&self) -> Option<&Path> {
        match self {
            Location::Local(path) => Some(path),
            Location::Object(_) => None,
        }
    }

    /// The file's name (the last path segment; `""` if there is none).
    pub fn file_name(&self) -> String {
        match self {
            Location::Local(path) => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            Location::Object(object) => object.key.filename().unwrap_or_default().to_owned(),
        }
    }

    /// The folder names above the file, outermost first (for hive partitions).
    pub fn folders(&self) -> Vec<String> {
        match self {
            Location::Local(path) => path
                .parent()
                .map(|parent| {
                    parent
                        .components()
                        .filter_map(|c| match c {
                            std::path::Component::Normal(name) => {
                                Some(name.to_string_lossy().into_owned())
                            }
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Location::Object(object) => {
                let parts: Vec<String> =
                    object.key.parts().map(|p| p.as_ref().to_owned()).collect();
                parts[..parts.len().saturating_sub(1)].to_vec()
            }
        }
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Self {
        Location::Local(path)
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Self {
        Location::Local(path.to_path_buf())
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Self {
        Location::Local(path.clone())
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::Object(object) => f.write_str(&object.url()),
        }
    }
}

/// Splits `s3://bucket/prefix` into the bucket and the prefix (without leading or trailing `/`);
/// `None` if `text` is not an `s3://` (or `s3a://`) URL.
pub fn parse_s3_url(text: &str) -> Option<Result<(String, String), String>> {
    let rest = text
        .strip_prefix("s3://")
        .or_else(|| text.strip_prefix("s3a://"))?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Some(Err(format!("{text}: no bucket name after s3://")));
    }
    Some(Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned())))
}

impl Place for Location {
    fn place(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls() {
        assert_eq!(parse_s3_url("data/x.csv"), None);
        assert_eq!(
            parse_s3_url("s3://lake/purchases/"),
            Some(Ok(("lake".into(), "purchases".into())))
        );
        assert_eq!(
            parse_s3_url("s3a://lake"),
            Some(Ok(("lake".into(), "".into())))
        );
        assert_eq!(
            parse_s3_url("s3://lake/a/b.parquet"),
            Some(Ok(("lake".into(), "a/b.parquet".into())))
        );
        assert!(matches!(parse_s3_url("s3:///x"), Some(Err(_))));
    }

    #[test]
    fn local_names_and_folders() {
        let at = Location::from(Path::new(
            "/data/dt=2024-06-30/category=books/part-0.parquet",
        ));
        assert_eq!(at.file_name(), "part-0.parquet");
        assert_eq!(at.folders(), ["data", "dt=2024-06-30", "category=books"]);
        assert_eq!(
            at.to_string(),
            "/data/dt=2024-06-30/category=books/part-0.parquet"
        );
    }
}

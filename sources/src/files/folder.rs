//! A folder of objects (`s3://bucket/prefix`) written and read whole: what a state directory on
//! S3 is.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path as ObjectPath;

use super::location::parse_s3_url;
use super::object::{Bucket, Connector, S3Config};
use crate::error::SourceError;

/// A folder of objects (`s3://bucket/prefix`) to keep files in, with blocking calls: what a
/// state directory on S3 is. A put is atomic (an object appears whole or not at all).
#[derive(Debug, Clone)]
pub struct ObjectFolder {
    bucket: Arc<Bucket>,
    prefix: String,
}

impl ObjectFolder {
    /// The folder at `url` (`s3://bucket/prefix`), reached as `config` says.
    pub fn open(url: &str, config: &S3Config) -> Result<ObjectFolder, SourceError> {
        let (bucket, prefix) = match parse_s3_url(url) {
            Some(Ok(parts)) => parts,
            Some(Err(message)) => return Err(SourceError::object_store(&url.to_owned(), message)),
            None => {
                return Err(SourceError::object_store(
                    &url.to_owned(),
                    "not an s3:// URL",
                ))
            }
        };
        let bucket = Connector::new(config).bucket(&bucket)?;
        Ok(ObjectFolder { bucket, prefix })
    }

    fn key(&self, name: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{}/{name}", self.prefix))
        }
    }

    /// The URL of the file `name` in the folder.
    pub fn url(&self, name: &str) -> String {
        self.bucket.url(&self.key(name))
    }

    /// Writes the file `name` (whole, replacing any).
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), SourceError> {
        self.bucket.put(&self.key(name), bytes)
    }

    /// The contents of the file `name`, `None` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<Bytes>, SourceError> {
        self.bucket.get(&self.key(name))
    }

    /// The names of the files directly in the folder.
    pub fn list(&self) -> Result<Vec<String>, SourceError> {
        let prefix = ObjectPath::from(self.prefix.as_str());
        Ok(self
            .bucket
            .list(&prefix)?
            .into_iter()
            .filter_map(|meta| meta.location.filename().map(str::to_owned))
            .collect())
    }

    /// Removes the file `name` (nothing if it is not there).
    pub fn delete(&self, name: &str) -> Result<(), SourceError> {
        self.bucket.delete(&self.key(name))
    }
}

//! Where the state's files live: a local folder (each file written to a temporary name, synced,
//! then renamed into place, and the folder synced) or an S3 prefix (a put is atomic).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use topsellers_sources::files::{ObjectFolder, S3Config};
use topsellers_sources::SourceError;

use super::StateError;

/// A state directory.
#[derive(Debug, Clone)]
pub enum Store {
    /// A local folder.
    Local(PathBuf),
    /// An S3 prefix.
    Object(ObjectFolder),
}

impl Store {
    /// The directory `dir` (a path, or `s3://bucket/prefix`), created if local and missing.
    pub fn open(dir: &str, s3: &S3Config) -> Result<Store, StateError> {
        if dir.starts_with("s3://") || dir.starts_with("s3a://") {
            let folder = ObjectFolder::open(dir, s3).map_err(|source| StateError::Store {
                dir: dir.to_owned(),
                source,
            })?;
            return Ok(Store::Object(folder));
        }
        let path = PathBuf::from(dir);
        std::fs::create_dir_all(&path).map_err(|e| StateError::Store {
            dir: dir.to_owned(),
            source: SourceError::io(&path, e),
        })?;
        Ok(Store::Local(path))
    }

    /// How errors and logs name the directory.
    pub fn name(&self) -> String {
        match self {
            Store::Local(path) => path.display().to_string(),
            Store::Object(folder) => folder.url(""),
        }
    }

    /// Where the file `name` is, for the file readers: a path or an `s3://` URL.
    pub fn location(&self, name: &str) -> String {
        match self {
            Store::Local(path) => path.join(name).display().to_string(),
            Store::Object(folder) => folder.url(name),
        }
    }

    fn error(&self, source: SourceError) -> StateError {
        StateError::Store {
            dir: self.name(),
            source,
        }
    }

    /// Writes the file `name` whole and durably: it appears with all of `bytes` or not at all.
    pub fn put(&self, name: &str, bytes: Vec<u8>) -> Result<(), StateError> {
        match self {
            Store::Local(dir) => {
                put_local(dir, name, &bytes).map_err(|e| self.error(SourceError::io(dir, e)))
            }
            Store::Object(folder) => folder.put(name, bytes).map_err(|e| self.error(e)),
        }
    }

    /// The contents of the file `name`, `None` if there is none.
    pub fn get(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        match self {
            Store::Local(dir) => match std::fs::read(dir.join(name)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(self.error(SourceError::io(&dir.join(name), e))),
            },
            Store::Object(folder) => folder
                .get(name)
                .map(|bytes| bytes.map(|b| b.to_vec()))
                .map_err(|e| self.error(e)),
        }
    }

    /// The names of the files in the directory (temporary files of unfinished writes
    /// included).
    pub fn list(&self) -> Result<Vec<String>, StateError> {
        match self {
            Store::Local(dir) => {
                let entries =
                    std::fs::read_dir(dir).map_err(|e| self.error(SourceError::io(dir, e)))?;
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.map_err(|e| self.error(SourceError::io(dir, e)))?;
                    if let Some(name) = entry.file_name().to_str() {
                        names.push(name.to_owned());
                    }
                }
                names.sort();
                Ok(names)
            }
            Store::Object(folder) => folder.list().map_err(|e| self.error(e)),
        }
    }

    /// Removes the file `name` (nothing if it is not there).
    pub fn delete(&self, name: &str) -> Result<(), StateError> {
        match self {
            Store::Local(dir) => match std::fs::remove_file(dir.join(name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(self.error(SourceError::io(&dir.join(name), e))),
            },
            Store::Object(folder) => folder.delete(name).map_err(|e| self.error(e)),
        }
    }
}

/// Writes `dir/name` through a temporary file that is synced, renamed into place, and the
/// folder synced: a crash leaves the old file or the new one, never half of one.
fn put_local(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_files_are_written_whole_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(
            &dir.path().join("state").display().to_string(),
            &S3Config::default(),
        )
        .unwrap();
        assert_eq!(store.get("a").unwrap(), None);
        store.put("a", b"one".to_vec()).unwrap();
        store.put("a", b"two".to_vec()).unwrap();
        store.put("b", vec![]).unwrap();
        assert_eq!(store.get("a").unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(store.list().unwrap(), ["a", "b"]);
        store.delete("a").unwrap();
        store.delete("a").unwrap();
        assert_eq!(store.list().unwrap(), ["b"]);
        assert!(store.location("b").ends_with("state/b"));
    }
}

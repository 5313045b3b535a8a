//! Parquet bytes wherever they are: footers read from a local file or with ranged GETs, and a
//! `ChunkReader` over a local file or over just the column chunks fetched for one row group.

use std::fs::File;
use std::io::{BufReader, Read};
use std::sync::Arc;

use bytes::{Buf, Bytes};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::reader::{ChunkReader, Length};

use super::location::{Location, ObjectLocation};
use crate::error::SourceError;

/// Bytes read from the end of an object for its footer in the first GET (enough for most
/// footers; a larger one costs a second GET).
const FOOTER_GUESS_BYTES: u64 = 64 << 10;

/// A Parquet file's parsed footer, shared by the read units of its row groups.
#[derive(Clone)]
pub struct Footer(pub Arc<ParquetMetaData>);

impl PartialEq for Footer {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Footer {}

impl std::hash::Hash for Footer {
    fn hash<H: std::hash::Hasher>(&self, _state: &mut H) {}
}

impl std::fmt::Debug for Footer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Footer({} row groups)", self.0.num_row_groups())
    }
}

/// Reads the footer of the Parquet file at `location` (`size` bytes: used for objects).
pub(crate) fn read_footer(location: &Location, size: u64) -> Result<Footer, SourceError> {
    let meta = match location {
        Location::Local(path) => {
            let file = File::open(path).map_err(|e| SourceError::io(path, e))?;
            ParquetMetaDataReader::new()
                .parse_and_finish(&file)
                .map_err(|e| SourceError::parquet(path, e))?
        }
        Location::Object(object) => object_footer(object, size)?,
    };
    let size = match location {
        Location::Local(path) => std::fs::metadata(path).map(|m| m.len()).unwrap_or(u64::MAX),
        Location::Object(_) => size,
    };
    check_chunks(&meta, size).map_err(|e| SourceError::parquet(&location.to_string(), e))?;
    Ok(Footer(Arc::new(meta)))
}

/// Refuses a footer whose column chunks lie outside the file (a damaged footer): the parquet
/// crate asserts on a negative offset or size (a panic) and reads past the end otherwise.
fn check_chunks(meta: &ParquetMetaData, file_bytes: u64) -> Result<(), String> {
    for (g, group) in meta.row_groups().iter().enumerate() {
        for (c, column) in group.columns().iter().enumerate() {
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let len = column.compressed_size();
            let end = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .and_then(|(start, len)| start.checked_add(len));
            if end.is_none_or(|end| end > file_bytes) {
                return Err(format!(
                    "damaged footer: column chunk {c} of row group {g} claims bytes \
                     {start}..+{len} of a {file_bytes}-byte file"
                ));
            }
        }
    }
    Ok(())
}

/// The footer of an object: one ranged GET of its tail, a second if the footer is larger.
fn object_footer(object: &ObjectLocation, size: u64) -> Result<ParquetMetaData, SourceError> {
    let url = object.url();
    let tail = |bytes: u64| {
        let start = size.saturating_sub(bytes);
        object.bucket.get_range(&object.key, start..size)
    };
    let mut reader = ParquetMetaDataReader::new();
    let bytes = tail(FOOTER_GUESS_BYTES)?;
    match reader.try_parse_sized(&bytes, size) {
        Ok(()) => {}
        Err(ParquetError::NeedMoreData(needed)) => {
            let bytes = tail(needed as u64)?;
            reader
                .try_parse_sized(&bytes, size)
                .map_err(|e| SourceError::parquet(&url, e))?;
        }
        Err(e) => return Err(SourceError::parquet(&url, e)),
    }
    reader.finish().map_err(|e| SourceError::parquet(&url, e))
}

/// The bytes a Parquet reader reads from: a local file, or byte ranges fetched beforehand.
pub(crate) enum ParquetInput {
    /// A local file.
    File(File),
    /// Ranges of an object (the column chunks to decode).
    Fetched(Fetched),
}

/// Byte ranges of a file of `len` bytes, held in memory.
pub(crate) struct Fetched {
    len: u64,
    /// `(start, bytes)`, sorted by start, not overlapping.
    ranges: Vec<(u64, Bytes)>,
}

impl Fetched {
    /// Ranges fetched otherwise: `(start, bytes)` of a file of `len` bytes.
    pub(crate) fn from_parts(len: u64, mut ranges: Vec<(u64, Bytes)>) -> Fetched {
        ranges.sort_by_key(|(start, _)| *start);
        Fetched { len, ranges }
    }

    /// The held bytes from `start` to the end of the range holding `start`.
    fn from(&self, start: u64) -> parquet::errors::Result<Bytes> {
        let at = self.ranges.partition_point(|(s, _)| *s <= start);
        let missing = || {
            ParquetError::General(format!(
                "byte {start} of the file was not fetched (the reader asked outside the \
                 column chunks it was given)"
            ))
        };
        let (first, bytes) = self
            .ranges
            .get(at.checked_sub(1).ok_or_else(missing)?)
            .ok_or_else(missing)?;
        let offset = usize::try_from(start - first).map_err(|_| missing())?;
        if offset > bytes.len() {
            return Err(missing());
        }
        Ok(bytes.slice(offset..))
    }
}

impl Length for ParquetInput {
    fn len(&self) -> u64 {
        match self {
            ParquetInput::File(file) => file.len(),
            ParquetInput::Fetched(fetched) => fetched.len,
        }
    }
}

/// A reader from some offset of a [`ParquetInput`].
pub(crate) enum InputRead {
    File(BufReader<File>),
    Bytes(bytes::buf::Reader<Bytes>),
}

impl Read for InputRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            InputRead::File(file) => file.read(buf),
            InputRead::Bytes(bytes) => bytes.read(buf),
        }
    }
}

impl ChunkReader for ParquetInput {
    type T = InputRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<InputRead> {
        match self {
            ParquetInput::File(file) => file.get_read(start).map(InputRead::File),
            ParquetInput::Fetched(fetched) => Ok(InputRead::Bytes(fetched.from(start)?.reader())),
        }
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        match self {
            ParquetInput::File(file) => file.get_bytes(start, length),
            ParquetInput::Fetched(fetched) => {
                let bytes = fetched.from(start)?;
                if bytes.len() < length {
                    return Err(ParquetError::General(format!(
                        "bytes {start}..{} of the file were not fetched",
                        start + length as u64
                    )));
                }
                Ok(bytes.slice(..length))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetched_ranges_serve_reads_inside_them_only() {
        let fetched = ParquetInput::Fetched(Fetched {
            len: 100,
            ranges: vec![
                (10, Bytes::from_static(b"abcdef")),
                (50, Bytes::from_static(b"XYZ")),
            ],
        });
        assert_eq!(fetched.len(), 100);
        assert_eq!(&fetched.get_bytes(12, 3).unwrap()[..], b"cde");
        assert_eq!(&fetched.get_bytes(50, 3).unwrap()[..], b"XYZ");
        let mut text = String::new();
        fetched
            .get_read(13)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "def");
        assert!(fetched.get_bytes(5, 2).is_err());
        assert!(fetched.get_bytes(14, 5).is_err());
        assert!(fetched.get_bytes(40, 1).is_err());
        assert!(fetched.get_read(0).is_err());
    }
}

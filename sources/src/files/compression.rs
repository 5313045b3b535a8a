//! Compressed text files: JSON Lines or CSV inside `.gz` (gzip) or `.zst` / `.zstd`
//! (Zstandard), as lakes often keep them, told by the file name's last extension. Parquet
//! compresses inside its pages, so a compressed Parquet file is not a format.
//!
//! Decoding streams (flate2, zstd: the usual crates); the backfill's progress counts the
//! compressed bytes read, so that it ends at the file's size.

use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a text file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.gz`
    Gzip,
    /// `.zst`, `.zstd`
    Zstd,
}

impl Compression {
    /// The compression a name's last extension stands for, and the name without it.
    pub fn split(name: &str) -> (Option<Compression>, &str) {
        let Some((stem, ext)) = name.rsplit_once('.') else {
            return (None, name);
        };
        match ext.to_ascii_lowercase().as_str() {
            "gz" => (Some(Compression::Gzip), stem),
            "zst" | "zstd" => (Some(Compression::Zstd), stem),
            _ => (None, name),
        }
    }

    /// Wraps `raw` (the file's bytes) in its decoder; `consumed` counts the raw bytes read.
    pub(crate) fn decode(
        self,
        raw: Box<dyn Read + Send>,
        consumed: Arc<AtomicU64>,
    ) -> std::io::Result<Box<dyn Read + Send>> {
        let counted = std::io::BufReader::with_capacity(1 << 16, Counted { raw, consumed });
        Ok(match self {
            // Concatenated gzip members (what `cat a.gz b.gz` makes) are one stream.
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(counted)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(counted)?),
        })
    }
}

/// A reader that counts the bytes it hands on.
struct Counted {
    raw: Box<dyn Read + Send>,
    consumed: Arc<AtomicU64>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.raw.read(buf)?;
        self.consumed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A text file's bytes, decoded, with the count of its raw bytes read when it is compressed
/// (progress is in the file's own bytes).
pub(crate) struct TextInput {
    /// The text.
    pub read: Box<dyn Read + Send>,
    /// Raw bytes read so far.
    pub consumed: RawBytes,
}

/// The raw bytes of a text file read so far: counted under the decoder of a compressed file,
/// else what the reader consumed of the text itself.
#[derive(Default)]
pub(crate) struct RawBytes(Option<Arc<AtomicU64>>);

impl RawBytes {
    /// Counted by `count` (a compressed file).
    pub fn counted(count: Arc<AtomicU64>) -> RawBytes {
        RawBytes(Some(count))
    }

    /// The raw bytes read, `text_bytes` being what the reader consumed of the text.
    pub fn read(&self, text_bytes: u64) -> u64 {
        self.0
            .as_ref()
            .map_or(text_bytes, |count| count.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{read_unit_all, Format, ReadUnit};
    use std::io::Write;

    #[test]
    fn names() {
        assert_eq!(
            Compression::split("a.jsonl.gz"),
            (Some(Compression::Gzip), "a.jsonl")
        );
        assert_eq!(
            Compression::split("a.csv.ZST"),
            (Some(Compression::Zstd), "a.csv")
        );
        assert_eq!(
            Compression::split("a.csv.zstd"),
            (Some(Compression::Zstd), "a.csv")
        );
        assert_eq!(Compression::split("a.csv"), (None, "a.csv"));
        assert_eq!(Format::from_name("x.jsonl.gz"), Some(Format::Jsonl));
        assert_eq!(Format::from_name("x.csv.zst"), Some(Format::Csv));
        assert_eq!(Format::from_name("x.parquet.gz"), None);
        assert_eq!(Format::from_name("x.txt.gz"), None);
        assert_eq!(Format::from_name(".gz"), None);
    }

    /// The same records read plain, gzipped (two members) and zstd-compressed; a corrupt
    /// stream is an error naming the file.
    #[test]
    fn compressed_files_read_as_the_plain_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for n in 0..5000 {
            text.push_str(&format!(
                "{{\"item_id\":\"i{}\",\"category\":\"a/b{}\",\"ts\":{n}}}\n",
                n % 97,
                n % 7
            ));
        }
        text.push_str("not json\n");
        let plain = dir.path().join("p.jsonl");
        std::fs::write(&plain, &text).unwrap();
        let gz = dir.path().join("p.jsonl.gz");
        let (half, rest) = text.split_at(text.len() / 2 + 3);
        let mut bytes = Vec::new();
        for part in [half, rest] {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(part.as_bytes()).unwrap();
            bytes.extend(e.finish().unwrap());
        }
        std::fs::write(&gz, &bytes).unwrap();
        let zst = dir.path().join("p.JSONL.zst");
        std::fs::write(&zst, zstd::encode_all(text.as_bytes(), 3).unwrap()).unwrap();
        let read = |path: &std::path::Path| {
            let format = Format::from_path(path).expect("a format");
            read_unit_all(&ReadUnit::new(path, format, None)).unwrap()
        };
        let (want, want_bad) = read(&plain);
        assert_eq!((want.len(), want_bad.len()), (5000, 1));
        for path in [&gz, &zst] {
            let (got, bad) = read(path);
            assert_eq!(got, want, "{}", path.display());
            assert_eq!(bad.len(), 1);
            assert!(bad[0].position.ends_with(":5001"), "{}", bad[0].position);
        }
        let broken = dir.path().join("b.csv.gz");
        std::fs::write(&broken, &bytes[..bytes.len() / 3]).unwrap();
        let unit = ReadUnit::new(&broken, Format::Csv, None);
        let error = read_unit_all(&unit).map(|_| ()).unwrap_err().to_string();
        assert!(error.contains("b.csv.gz"), "{error}");
    }
}

//! Writing purchases to JSON Lines, CSV or Parquet files (`topsellers generate`).

use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMillisecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use topsellers_model::{format_rfc3339_ms, Purchase};

use crate::error::SourceError;
use crate::files::Format;

/// Rows per Arrow record batch handed to the Parquet writer.
const BATCH_ROWS: usize = 64 * 1024;
/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1024 * 1024;

/// Writes purchases to one file. Call [`PurchaseWriter::finish`] at the end: a Parquet file is
/// only readable once finished.
pub struct PurchaseWriter {
    path: PathBuf,
    rows: u64,
    sink: Sink,
}

enum Sink {
    Jsonl(BufWriter<File>),
    Csv(Box<CsvSink>),
    Parquet(Box<ParquetSink<File>>),
}

struct CsvSink {
    writer: csv::Writer<File>,
    ts: String,
    quantity: String,
}

struct ParquetSink<W: Write + Send> {
    writer: ArrowWriter<W>,
    schema: SchemaRef,
    item_id: StringBuilder,
    category: StringBuilder,
    ts: TimestampMillisecondBuilder,
    quantity: Int64Builder,
    pending: usize,
}

/// The Arrow schema of written Parquet files.
pub fn parquet_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Utf8, false),
        Field::new("category", DataType::Utf8, false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("quantity", DataType::Int64, false),
    ]))
}

impl<W: Write + Send> ParquetSink<W> {
    fn new(file: W, path: &Path) -> Result<Self, SourceError> {
        let schema = parquet_schema();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| SourceError::parquet(path, e))?;
        Ok(ParquetSink {
            writer,
            schema,
            item_id: StringBuilder::new(),
            category: StringBuilder::new(),
            ts: TimestampMillisecondBuilder::new().with_timezone("UTC"),
            quantity: Int64Builder::new(),
            pending: 0,
        })
    }

    fn push(&mut self, p: &Purchase, path: &Path) -> Result<(), SourceError> {
        self.item_id.append_value(&p.item_id);
        self.category.append_value(&p.category);
        self.ts.append_value(p.ts_ms);
        self.quantity.append_value(p.quantity);
        self.pending += 1;
        if self.pending >= BATCH_ROWS {
            self.flush_batch(path)?;
        }
        Ok(())
    }

    fn flush_batch(&mut self, path: &Path) -> Result<(), SourceError> {
        if self.pending == 0 {
            return Ok(());
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.item_id.finish()),
            Arc::new(self.category.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.quantity.finish()),
        ];
        self.pending = 0;
        let batch = RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(|e| SourceError::parquet(path, e))?;
        self.writer
            .write(&batch)
            .map_err(|e| SourceError::parquet(path, e))
    }
}

/// `purchases` as the bytes of one Parquet file, in the schema [`PurchaseWriter`] writes (and
/// the file readers read): for callers that store the file elsewhere. `name` names it in errors.
pub fn parquet_bytes(purchases: &[Purchase], name: &str) -> Result<Vec<u8>, SourceError> {
    let path = Path::new(name);
    let mut sink = ParquetSink::new(Vec::with_capacity(purchases.len() * 8 + 1024), path)?;
    for purchase in purchases {
        sink.push(purchase, path)?;
    }
    sink.flush_batch(path)?;
    sink.writer
        .into_inner()
        .map_err(|e| SourceError::parquet(path, e))
}

/// The purchases of a Parquet file [`parquet_bytes`] wrote (the same schema), in order.
pub fn purchases_from_parquet(bytes: Vec<u8>, name: &str) -> Result<Vec<Purchase>, SourceError> {
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Int64Type, TimestampMillisecondType};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let path = Path::new(name);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .and_then(|builder| builder.build())
        .map_err(|e| SourceError::parquet(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| SourceError::parquet(path, e))?;
        let column = |name: &'static str| {
            batch
                .column_by_name(name)
                .ok_or(SourceError::MissingColumn {
                    path: name.to_owned(),
                    column: name,
                })
        };
        let items = column("item_id")?.as_string::<i32>();
        let categories = column("category")?.as_string::<i32>();
        let ts = column("ts")?.as_primitive::<TimestampMillisecondType>();
        let quantities = column("quantity")?.as_primitive::<Int64Type>();
        for row in 0..batch.num_rows() {
            out.push(Purchase {
                item_id: items.value(row).into(),
                category: categories.value(row).into(),
                ts_ms: ts.value(row),
                quantity: quantities.value(row),
            });
        }
    }
    Ok(out)
}

impl PurchaseWriter {
    /// Creates (or truncates) `path`, and its parent folders, for writing in `format`.
    pub fn create(path: impl AsRef<Path>, format: Format) -> Result<Self, SourceError> {
        let path = path.as_ref();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| SourceError::io(parent, e))?;
        }
        let file = File::create(path).map_err(|e| SourceError::io(path, e))?;
        let sink = match format {
            Format::Jsonl => Sink::Jsonl(BufWriter::with_capacity(1 << 20, file)),
            Format::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .buffer_capacity(1 << 20)
                    .from_writer(file);
                writer
                    .write_record(["item_id", "category", "ts", "quantity"])
                    .map_err(|e| csv_error(path, e))?;
                Sink::Csv(Box::new(CsvSink {
                    writer,
                    ts: String::new(),
                    quantity: String::new(),
                }))
            }
            Format::Parquet => Sink::Parquet(Box::new(ParquetSink::new(file, path)?)),
        };
        Ok(PurchaseWriter {
            path: path.to_path_buf(),
            rows: 0,
            sink,
        })
    }

    /// Writes one purchase.
    pub fn write(&mut self, p: &Purchase) -> Result<(), SourceError> {
        let path = &self.path;
        match &mut self.sink {
            Sink::Jsonl(out) => write_json_line(out, p).map_err(|e| SourceError::io(path, e))?,
            Sink::Csv(sink) => {
                let CsvSink {
                    writer,
                    ts,
                    quantity,
                } = &mut **sink;
                ts.clear();
                let _ = write!(ts, "{}", p.ts_ms);
                quantity.clear();
                let _ = write!(quantity, "{}", p.quantity);
                writer
                    .write_record([
                        p.item_id.as_bytes(),
                        p.category.as_bytes(),
                        ts.as_bytes(),
                        quantity.as_bytes(),
                    ])
                    .map_err(|e| csv_error(path, e))?;
            }
            Sink::Parquet(sink) => sink.push(p, path)?,
        }
        self.rows += 1;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Flushes and closes the file; returns the rows written.
    pub fn finish(self) -> Result<u64, SourceError> {
        let path = &self.path;
        match self.sink {
            Sink::Jsonl(mut out) => out.flush().map_err(|e| SourceError::io(path, e))?,
            Sink::Csv(mut sink) => sink.writer.flush().map_err(|e| SourceError::io(path, e))?,
            Sink::Parquet(mut sink) => {
                sink.flush_batch(path)?;
                sink.writer
                    .close()
                    .map_err(|e| SourceError::parquet(path, e))?;
            }
        }
        Ok(self.rows)
    }
}

fn csv_error(path: &Path, error: csv::Error) -> SourceError {
    match error.into_kind() {
        csv::ErrorKind::Io(e) => SourceError::io(path, e),
        other => SourceError::io(path, std::io::Error::other(format!("{other:?}"))),
    }
}

/// `{"item_id":"…","category":"…","ts":"<RFC 3339 ms>","quantity":N}` and a newline.
fn write_json_line(out: &mut impl Write, p: &Purchase) -> std::io::Result<()> {
    out.write_all(b"{\"item_id\":")?;
    serde_json::to_writer(&mut *out, &*p.item_id)?;
    out.write_all(b",\"category\":")?;
    serde_json::to_writer(&mut *out, &*p.category)?;
    writeln!(
        out,
        ",\"ts\":\"{}\",\"quantity\":{}}}",
        format_rfc3339_ms(p.ts_ms),
        p.quantity
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{list_units, read_unit_all};

    fn sample(n: usize) -> Vec<Purchase> {
        let categories = [
            "books/fiction/scifi",
            "bücher/roman",
            "本/漫画",
            "a,b/\"q\"",
            "x",
        ];
        (0..n)
            .map(|i| Purchase {
                item_id: format!("item-{i}{}", if i % 7 == 0 { ",\"\n" } else { "" }).into(),
                category: categories[i % categories.len()].into(),
                ts_ms: 1_700_000_000_000 + (i as i64 * 7919) % 100_000 - 50_000,
                quantity: [1, 2, 3, -1][i % 4],
            })
            .collect()
    }

    fn round_trip(format: Format, n: usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(format!("out/p.{format}"));
        let purchases = sample(n);
        let mut writer = PurchaseWriter::create(&path, format).unwrap();
        for p in &purchases {
            writer.write(p).unwrap();
        }
        assert_eq!(writer.finish().unwrap(), n as u64);
        let units = list_units(&[&path], None).unwrap();
        let mut back = Vec::new();
        for unit in &units {
            let (out, bad) = read_unit_all(unit).unwrap();
            assert!(bad.is_empty(), "{format}: {bad:?}");
            back.extend(out);
        }
        assert_eq!(back, purchases, "{format}");
    }

    #[test]
    fn parquet_bytes_read_back_the_same_purchases() {
        let purchases = sample(70_000);
        let bytes = parquet_bytes(&purchases, "mem.parquet").unwrap();
        assert_eq!(
            purchases_from_parquet(bytes, "mem.parquet").unwrap(),
            purchases
        );
        assert!(purchases_from_parquet(b"PAR1 nope".to_vec(), "x").is_err());
    }

    #[test]
    fn jsonl_round_trip() {
        round_trip(Format::Jsonl, 1000);
    }

    #[test]
    fn csv_round_trip() {
        round_trip(Format::Csv, 1000);
    }

    #[test]
    fn parquet_round_trip_across_batches() {
        round_trip(Format::Parquet, BATCH_ROWS + 1000);
    }

    #[test]
    fn empty_files_round_trip() {
        for format in [Format::Jsonl, Format::Csv, Format::Parquet] {
            round_trip(format, 0);
        }
    }

    #[test]
    fn jsonl_line_shape() {
        let p = Purchase {
            item_id: "i".into(),
            category: "a/b".into(),
            ts_ms: 1_700_000_000_123,
            quantity: -1,
        };
        let mut out = Vec::new();
        write_json_line(&mut out, &p).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"item_id\":\"i\",\"category\":\"a/b\",\"ts\":\"2023-11-14T22:13:20.123Z\",\"quantity\":-1}\n"
        );
    }
}

#[cfg(test)]
mod probe {
    use super::*;
    use crate::files::{list_units, open_unit};
    use crate::generator::{history, Catalog, GeneratorConfig};

    #[test]
    #[ignore = "throughput probe: cargo test -p topsellers-sources -- --ignored read_throughput --nocapture"]
    fn read_throughput() {
        let dir = tempfile::tempdir().unwrap();
        let config = GeneratorConfig::default();
        let catalog = Arc::new(Catalog::new(&config).unwrap());
        let n = 1_000_000;
        for format in [Format::Jsonl, Format::Csv, Format::Parquet] {
            let path = dir.path().join(format!("p.{format}"));
            let start = std::time::Instant::now();
            let mut writer = PurchaseWriter::create(&path, format).unwrap();
            for p in history(catalog.clone(), &config, n, 1_700_000_000_000, 86_400_000).unwrap() {
                writer.write(&p).unwrap();
            }
            writer.finish().unwrap();
            let wrote = start.elapsed().as_secs_f64();
            let start = std::time::Instant::now();
            let (mut out, mut bad, mut total) = (Vec::with_capacity(65_536), Vec::new(), 0);
            for unit in list_units(&[&path], None).unwrap() {
                let mut reader = open_unit(&unit).unwrap();
                while reader.next_batch(&mut out, &mut bad, 65_536).unwrap() {
                    total += out.len();
                    out.clear();
                }
            }
            assert_eq!(total as u64 + bad.len() as u64, n);
            let read = start.elapsed().as_secs_f64();
            println!(
                "{format}: write {:.0}/s, read {:.0}/s",
                n as f64 / wrote,
                n as f64 / read
            );
        }
    }
}

//! Parquet reader: one row group, only the needed columns, by name, from a local file or from
//! the column chunks fetched with ranged GETs.

use std::fs::File;
use std::ops::Range;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;
use topsellers_model::{Purchase, PurchaseRef, RecordError};

use super::fields::{self, Tally};
use super::location::Location;
use super::parquet_columns::{
    is_int, is_text, is_time, BatchColumns, CategoryChecks, IntCol, ItemCol, TextCol, TsCol,
};
use super::parquet_input::{read_footer, Fetched, Footer, ParquetInput};
use super::{ReadUnit, RecordReader};
use crate::bad::{truncate_at_char, BadRecord, MAX_RAW_BYTES};
use crate::error::SourceError;
use crate::intern::Interner;
use crate::position::row_position;

/// Rows per Arrow record batch decoded.
const BATCH_ROWS: usize = 8192;

/// Whether a column type is accepted.
type TypeRule = fn(&DataType) -> bool;

/// The columns read: name, whether required, and the type rule each must meet. (`category`
/// may be missing when a `category=` partition supplies it.)
const COLUMNS: [(&str, bool, TypeRule); 4] = [
    ("item_id", true, |dt| is_text(dt) || is_int(dt)),
    ("category", true, is_text),
    ("ts", true, is_time),
    ("quantity", false, is_int),
];

/// A decoded record batch and the next row to take from it.
struct Current {
    columns: BatchColumns,
    len: usize,
    next: usize,
    /// File row index of the batch's first row.
    first_row: u64,
}

/// Reads one row group of a Parquet file.
pub(crate) struct ParquetReader {
    /// The file's path or URL (positions and errors).
    label: String,
    batches: ParquetRecordBatchReader,
    current: Option<Current>,
    next_row: u64,
    /// The category of rows without one (a `category=` partition).
    category: Option<Arc<str>>,
    interner: Interner,
    number: String,
    tally: Tally,
    done: bool,
}

/// A unit's footer: the one read when listing, else read now.
fn footer_of(unit: &ReadUnit) -> Result<Footer, SourceError> {
    match &unit.footer {
        Some(footer) => Ok(footer.clone()),
        None => {
            let size = match (&unit.location, unit.file_bytes) {
                (Location::Object(object), 0) => {
                    object
                        .bucket
                        .head(&object.key)?
                        .ok_or_else(|| SourceError::NotFound { path: object.url() })?
                        .size
                }
                (_, size) => size,
            };
            read_footer(&unit.location, size)
        }
    }
}

/// What reading some columns of one row group takes, known from the footer alone: the
/// projection, and for an object the byte ranges of its column chunks to fetch.
pub(crate) struct ParquetPlan {
    unit: ReadUnit,
    meta: ArrowReaderMetadata,
    row_group: usize,
    mask: ProjectionMask,
}

impl ParquetPlan {
    fn new(
        unit: &ReadUnit,
        meta: ArrowReaderMetadata,
        row_group: usize,
        columns: Vec<usize>,
    ) -> Self {
        let mask = ProjectionMask::roots(meta.parquet_schema(), columns);
        ParquetPlan {
            unit: unit.clone(),
            meta,
            row_group,
            mask,
        }
    }

    /// The unit.
    pub(crate) fn unit(&self) -> &ReadUnit {
        &self.unit
    }

    /// The byte ranges of the column chunks to read.
    pub(crate) fn ranges(&self) -> Vec<Range<u64>> {
        column_ranges(self.meta.metadata(), self.row_group, &self.mask)
    }

    /// The input of `ranges` fetched as `bytes` (for an object).
    pub(crate) fn fetched(&self, ranges: &[Range<u64>], bytes: Vec<bytes::Bytes>) -> ParquetInput {
        let len = self
            .unit
            .file_bytes
            .max(ranges.iter().map(|r| r.end).max().unwrap_or(0));
        ParquetInput::Fetched(Fetched::from_parts(
            len,
            ranges.iter().map(|r| r.start).zip(bytes).collect(),
        ))
    }

    /// The input, now: the local file, or the column chunks fetched with ranged GETs.
    pub(crate) fn input(&self) -> Result<ParquetInput, SourceError> {
        match &self.unit.location {
            Location::Local(path) => Ok(ParquetInput::File(
                File::open(path).map_err(|e| SourceError::io(path, e))?,
            )),
            Location::Object(object) => {
                let ranges = self.ranges();
                let bytes = object.bucket.get_ranges(&object.key, &ranges)?;
                Ok(self.fetched(&ranges, bytes))
            }
        }
    }

    /// Batches of the planned columns decoded from `input`.
    fn batches(self, input: ParquetInput) -> Result<ParquetRecordBatchReader, SourceError> {
        ParquetRecordBatchReaderBuilder::new_with_metadata(input, self.meta)
            .with_row_groups(vec![self.row_group])
            .with_projection(self.mask)
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(|e| SourceError::parquet(&self.unit.location, e))
    }
}

/// The byte ranges of the column chunks of `row_group` that `mask` selects: all a reader of
/// those columns reads (footer aside).
fn column_ranges(
    meta: &ParquetMetaData,
    row_group: usize,
    mask: &ProjectionMask,
) -> Vec<Range<u64>> {
    let group = meta.row_group(row_group);
    (0..group.num_columns())
        .filter(|&leaf| mask.leaf_included(leaf))
        .map(|leaf| {
            let (start, len) = group.column(leaf).byte_range();
            start..start + len
        })
        .collect()
}

/// The footer as Arrow sees it, after checking that `row_group` exists.
fn arrow_metadata(unit: &ReadUnit, row_group: usize) -> Result<ArrowReaderMetadata, SourceError> {
    let footer = footer_of(unit)?;
    let groups = footer.0.num_row_groups();
    if row_group >= groups {
        return Err(SourceError::parquet(
            &unit.location,
            format!("row group {row_group} does not exist (the file has {groups})"),
        ));
    }
    let meta = ArrowReaderMetadata::try_new(footer.0.clone(), ArrowReaderOptions::new())
        .map_err(|e| SourceError::parquet(&unit.location, e))?;
    // A few thousand category paths repeat over millions of rows: decoded as a dictionary, a
    // row's category is an index into them rather than a copy of its text.
    let hinted = category_as_dictionary(meta.schema()).and_then(|schema| {
        let options = ArrowReaderOptions::new().with_schema(schema);
        ArrowReaderMetadata::try_new(footer.0, options).ok()
    });
    Ok(hinted.unwrap_or(meta))
}

/// `schema` with a plain-text `category` column read as a dictionary; `None` if there is none.
fn category_as_dictionary(schema: &Schema) -> Option<Arc<Schema>> {
    let (at, field) = schema.column_with_name("category")?;
    if field.data_type() != &DataType::Utf8 {
        return None;
    }
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[at] = field.clone().with_data_type(DataType::Dictionary(
        Box::new(DataType::Int32),
        Box::new(DataType::Utf8),
    ));
    Some(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )))
}

impl ParquetReader {
    /// Opens a reader of `unit`, reading (or fetching) its column chunks now.
    pub(crate) fn open(unit: &ReadUnit) -> Result<Self, SourceError> {
        let plan = ParquetReader::plan(unit)?;
        let input = plan.input()?;
        ParquetReader::from_plan(plan, input)
    }

    /// What reading `unit` takes: its footer is read (unless listing did) and its columns
    /// checked, nothing else.
    pub(crate) fn plan(unit: &ReadUnit) -> Result<ParquetPlan, SourceError> {
        let row_group = unit.row_group.unwrap_or(0);
        let meta = arrow_metadata(unit, row_group)?;
        let category = unit.partitions.category.is_some();
        let schema = meta.schema().clone();
        let mut roots = Vec::new();
        for (name, required, accepts) in COLUMNS {
            let required = required && !(name == "category" && category);
            match schema.fields().iter().position(|f| f.name() == name) {
                None if required => {
                    return Err(SourceError::MissingColumn {
                        path: unit.location.to_string(),
                        column: name,
                    })
                }
                None => {}
                Some(index) => {
                    let found = schema.field(index).data_type();
                    if !accepts(found) {
                        return Err(SourceError::UnsupportedColumnType {
                            path: unit.location.to_string(),
                            column: name,
                            found: found.to_string(),
                        });
                    }
                    roots.push(index);
                }
            }
        }
        Ok(ParquetPlan::new(unit, meta, row_group, roots))
    }

    /// The reader of a planned unit over its `input`.
    pub(crate) fn from_plan(plan: ParquetPlan, input: ParquetInput) -> Result<Self, SourceError> {
        let first_row: u64 = plan.meta.metadata().row_groups()[..plan.row_group]
            .iter()
            .map(|g| u64::try_from(g.num_rows()).unwrap_or(0))
            .sum();
        let label = plan.unit.location.to_string();
        let category = plan.unit.partitions.category.clone();
        let batches = plan.batches(input)?;
        Ok(ParquetReader {
            label,
            batches,
            current: None,
            next_row: first_row,
            category,
            interner: Interner::new(),
            number: String::new(),
            tally: Tally::default(),
            done: false,
        })
    }

    fn columns(&self, batch: &RecordBatch) -> Result<BatchColumns, SourceError> {
        let unsupported = |column: &'static str| {
            let found = batch
                .column_by_name(column)
                .map(|c| c.data_type().to_string());
            SourceError::UnsupportedColumnType {
                path: self.label.clone(),
                column,
                found: found.unwrap_or_else(|| "nothing".to_owned()),
            }
        };
        let get = |column: &'static str| {
            batch
                .column_by_name(column)
                .ok_or_else(|| unsupported(column))
        };
        Ok(BatchColumns {
            item_id: ItemCol::new(get("item_id")?).ok_or_else(|| unsupported("item_id"))?,
            category: match batch.column_by_name("category") {
                None if self.category.is_some() => None,
                None => return Err(unsupported("category")),
                Some(array) => Some(TextCol::new(array).ok_or_else(|| unsupported("category"))?),
            },
            category_checks: batch.column_by_name("category").and_then(|array| {
                let reuse = self
                    .current
                    .as_ref()
                    .and_then(|c| c.columns.category_checks.as_ref());
                CategoryChecks::of(array, reuse)
            }),
            ts: TsCol::new(get("ts")?).ok_or_else(|| unsupported("ts"))?,
            quantity: match batch.column_by_name("quantity") {
                None => None,
                Some(array) => Some(IntCol::new(array).ok_or_else(|| unsupported("quantity"))?),
            },
        })
    }

    /// Makes sure there is a batch with rows left; false at the end of the row group.
    fn ensure_batch(&mut self) -> Result<bool, SourceError> {
        loop {
            if self.current.as_ref().is_some_and(|c| c.next < c.len) {
                return Ok(true);
            }
            match self.batches.next() {
                None => return Ok(false),
                Some(Err(e)) => return Err(SourceError::parquet(&self.label, e)),
                Some(Ok(batch)) => {
                    let columns = self.columns(&batch)?;
                    let len = batch.num_rows();
                    self.current = Some(Current {
                        columns,
                        len,
                        next: 0,
                        first_row: self.next_row,
                    });
                    self.next_row += len as u64;
                }
            }
        }
    }
}

/// One row's purchase, borrowed from the decoded columns (an integer item id is written into
/// `number` as its decimal text).
fn parse_row<'c>(
    columns: &'c BatchColumns,
    row: usize,
    default_category: Option<&'c str>,
    number: &'c mut String,
) -> Result<Option<PurchaseRef<'c>>, RecordError> {
    let item_id: &str = match &columns.item_id {
        ItemCol::Text(c) => c.get(row).ok_or(RecordError::MissingField("item_id"))?,
        ItemCol::Int(c) => fields::int_text(
            number,
            c.get(row).ok_or(RecordError::MissingField("item_id"))?,
        ),
    };
    // A dictionary's values were checked once each: such a row's category costs an index.
    let keyed = match (&columns.category, &columns.category_checks) {
        (Some(column), Some(checks)) => column
            .get_keyed(row)
            .map(|(key, text)| (text, checks.errors.get(key).and_then(Option::as_ref))),
        _ => None,
    };
    let category = match keyed {
        Some((text, _)) => text,
        None => columns
            .category
            .as_ref()
            .and_then(|c| c.get(row))
            .or(default_category)
            .ok_or(RecordError::MissingField("category"))?,
    };
    let ts_ms = columns.ts.get(row)?;
    let quantity = match columns.quantity.as_ref().and_then(|c| c.get(row)) {
        None => 1,
        Some(v) => i64::try_from(v).map_err(|_| RecordError::BadQuantity(v.to_string()))?,
    };
    match keyed {
        Some((_, error)) => {
            PurchaseRef::from_checked_category(item_id, category, error, ts_ms, quantity)
        }
        None => PurchaseRef::from_fields(item_id, category, ts_ms, quantity),
    }
}

impl ParquetReader {
    /// Reads at most `max` rows: each valid purchase goes to `visit`, borrowed from the decoded
    /// columns, each bad record to `bad`. The return value is [`RecordReader::next_batch`]'s.
    fn scan(
        &mut self,
        bad: &mut Vec<BadRecord>,
        max: usize,
        mut visit: impl FnMut(PurchaseRef<'_>, &mut Interner),
    ) -> Result<bool, SourceError> {
        let max = max.max(1);
        let delivered = |tally: &Tally| tally.rows - tally.ignored;
        let before = delivered(&self.tally);
        let mut examined = 0;
        while examined < max && !self.done {
            if !self.ensure_batch().inspect_err(|_| self.done = true)? {
                self.done = true;
                break;
            }
            let Some(current) = self.current.as_mut() else {
                break;
            };
            let label = &self.label;
            while current.next < current.len && examined < max {
                let row = current.next;
                current.next += 1;
                examined += 1;
                let columns = &current.columns;
                let outcome = parse_row(columns, row, self.category.as_deref(), &mut self.number);
                let file_row = current.first_row + row as u64;
                let purchase = fields::deliver(outcome, &mut self.tally, bad, |error| {
                    let mut raw = columns.render(row);
                    truncate_at_char(&mut raw, MAX_RAW_BYTES);
                    BadRecord {
                        position: row_position(label, file_row),
                        error,
                        raw,
                    }
                });
                if let Some(purchase) = purchase {
                    visit(purchase, &mut self.interner);
                }
            }
        }
        Ok(!(self.done && delivered(&self.tally) == before))
    }
}

impl RecordReader for ParquetReader {
    fn next_batch(
        &mut self,
        out: &mut Vec<Purchase>,
        bad: &mut Vec<BadRecord>,
        max: usize,
    ) -> Result<bool, SourceError> {
        self.scan(bad, max, |purchase, interner| {
            out.push(purchase.to_purchase(interner.intern(purchase.category)))
        })
    }

    fn visit_batch(
        &mut self,
        visit: &mut dyn FnMut(PurchaseRef<'_>),
        bad: &mut Vec<BadRecord>,
        max: usize,
    ) -> Result<bool, SourceError> {
        self.scan(bad, max, |purchase, _| visit(purchase))
    }

    fn ignored(&self) -> u64 {
        self.tally.ignored
    }

    fn rows_read(&self) -> u64 {
        self.tally.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{list_units, open_unit, read_unit_all, Format, ReadUnit};
    use arrow_array::types::Int32Type;
    use arrow_array::{
        ArrayRef, DictionaryArray, Int16Array, Int32Array, Int64Array, LargeStringArray,
        StringArray, StringViewArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        TimestampSecondArray, UInt64Array, UInt8Array,
    };
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use std::path::Path;

    fn write(path: &Path, columns: Vec<(&str, ArrayRef)>, row_group_rows: usize) {
        let batch = RecordBatch::try_from_iter(columns).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(row_group_rows))
            .build();
        let file = File::create(path).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
    }

    fn strings(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn read_all(path: &Path) -> (Vec<Purchase>, Vec<BadRecord>, usize) {
        let units = list_units(&[path], None).unwrap();
        let (mut out, mut bad) = (Vec::new(), Vec::new());
        for unit in &units {
            let (o, b) = read_unit_all(unit).unwrap();
            out.extend(o);
            bad.extend(b);
        }
        (out, bad, units.len())
    }

    #[test]
    fn plain_columns_row_groups_and_extra_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let n = 25;
        let ids: Vec<String> = (0..n).map(|i| format!("item-{i}")).collect();
        let cats: Vec<&str> = (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    "books/fiction"
                } else {
                    "本/漫画"
                }
            })
            .collect();
        write(
            &path,
            vec![
                (
                    "extra",
                    Arc::new(Int32Array::from((0..n).collect::<Vec<i32>>())) as ArrayRef,
                ),
                (
                    "quantity",
                    Arc::new(Int16Array::from(
                        (0..n).map(|i| (i % 3) as i16 - 1).collect::<Vec<_>>(),
                    )),
                ),
                (
                    "ts",
                    Arc::new(Int64Array::from(
                        (0..n).map(|i| 1000 + i as i64).collect::<Vec<_>>(),
                    )),
                ),
                ("category", Arc::new(StringArray::from(cats.clone()))),
                ("item_id", Arc::new(StringArray::from(ids.clone()))),
            ],
            10,
        );
        let units = list_units(&[&path], None).unwrap();
        assert_eq!(units.len(), 3);
        assert_eq!(
            units.iter().map(|u| u.row_group).collect::<Vec<_>>(),
            [Some(0), Some(1), Some(2)]
        );
        assert_eq!(
            units.iter().map(|u| u.size_hint().rows).collect::<Vec<_>>(),
            [Some(10), Some(10), Some(5)]
        );
        let (out, bad, _) = read_all(&path);
        assert!(bad.is_empty());
        // quantity (i % 3) - 1: i % 3 == 1 gives 0, ignored.
        let expect: Vec<_> = (0..n as usize)
            .filter(|i| i % 3 != 1)
            .map(|i| {
                (
                    ids[i].clone(),
                    cats[i].to_owned(),
                    1000 + i as i64,
                    (i % 3) as i64 - 1,
                )
            })
            .collect();
        let got: Vec<_> = out
            .iter()
            .map(|p| {
                (
                    p.item_id.to_string(),
                    p.category.to_string(),
                    p.ts_ms,
                    p.quantity,
                )
            })
            .collect();
        assert_eq!(got, expect);
        let mut reader = open_unit(&units[0]).unwrap();
        let (mut o, mut b) = (Vec::new(), Vec::new());
        while reader.next_batch(&mut o, &mut b, 3).unwrap() {}
        assert_eq!(reader.rows_read(), 10);
        assert_eq!(reader.ignored(), 3); // rows 1, 4, 7
    }

    #[test]
    fn timestamps_of_every_unit_integer_ids_dictionaries_and_views() {
        let dir = tempfile::tempdir().unwrap();
        let base_ms: i64 = 1_700_000_000_123;
        let cases: Vec<(&str, ArrayRef)> = vec![
            (
                "s",
                Arc::new(TimestampSecondArray::from(vec![base_ms / 1000]).with_timezone("UTC")),
            ),
            (
                "us",
                Arc::new(TimestampMicrosecondArray::from(vec![base_ms * 1000 + 999])),
            ),
            (
                "ns",
                Arc::new(TimestampNanosecondArray::from(vec![1_500_000]).with_timezone("+02:00")),
            ),
            ("i32", Arc::new(Int32Array::from(vec![123]))),
            ("text", strings(&[Some("2023-11-14T22:13:20.123Z")])),
            (
                "large",
                Arc::new(LargeStringArray::from(vec!["1700000000123"])),
            ),
        ];
        let expect = [base_ms / 1000 * 1000, base_ms, 1, 123, base_ms, base_ms];
        for ((name, ts), want) in cases.into_iter().zip(expect) {
            let path = dir.path().join(format!("{name}.parquet"));
            let dict: DictionaryArray<Int32Type> = vec!["home/garden"].into_iter().collect();
            write(
                &path,
                vec![
                    (
                        "item_id",
                        Arc::new(UInt64Array::from(vec![u64::MAX])) as ArrayRef,
                    ),
                    ("category", Arc::new(dict)),
                    ("ts", ts),
                ],
                100,
            );
            let (out, bad, _) = read_all(&path);
            assert!(bad.is_empty(), "{name}: {bad:?}");
            assert_eq!(out.len(), 1, "{name}");
            assert_eq!(out[0].ts_ms, want, "{name}");
            assert_eq!(&*out[0].item_id, "18446744073709551615");
            assert_eq!(&*out[0].category, "home/garden");
            assert_eq!(out[0].quantity, 1);
        }
        let path = dir.path().join("view.parquet");
        write(
            &path,
            vec![
                (
                    "item_id",
                    Arc::new(StringViewArray::from(vec!["v"])) as ArrayRef,
                ),
                ("category", Arc::new(StringViewArray::from(vec!["a/b"]))),
                ("ts", Arc::new(Int64Array::from(vec![7]))),
                ("quantity", Arc::new(UInt8Array::from(vec![3]))),
            ],
            100,
        );
        let (out, _, _) = read_all(&path);
        assert_eq!(
            (
                &*out[0].item_id,
                &*out[0].category,
                out[0].ts_ms,
                out[0].quantity
            ),
            ("v", "a/b", 7, 3)
        );
    }

    #[test]
    fn object_reads_fetch_only_the_projected_column_chunks() {
        // A wide column nobody reads: a reader over an object fetches the other columns' chunks
        // only, and decodes them like the local file.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.parquet");
        let n = 2000;
        let payload: Vec<String> = (0..n).map(|i| format!("{i:0>200}")).collect();
        write(
            &path,
            vec![
                ("payload", Arc::new(StringArray::from(payload)) as ArrayRef),
                (
                    "item_id",
                    Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| format!("i{}", i % 7)),
                    )),
                ),
                (
                    "category",
                    Arc::new(StringArray::from_iter_values((0..n).map(|_| "a/b"))),
                ),
                ("ts", Arc::new(Int64Array::from_iter_values(0..n as i64))),
            ],
            700,
        );
        let units = list_units(&[&path], None).unwrap();
        assert_eq!(units.len(), 3);
        let file_bytes = std::fs::read(&path).unwrap();
        for unit in &units {
            let row_group = unit.row_group.unwrap();
            let meta = arrow_metadata(unit, row_group).unwrap();
            let schema = meta.schema().clone();
            let roots: Vec<usize> = ["item_id", "category", "ts"]
                .iter()
                .map(|name| {
                    schema
                        .fields()
                        .iter()
                        .position(|f| f.name() == *name)
                        .unwrap()
                })
                .collect();
            let mask = ProjectionMask::roots(meta.parquet_schema(), roots);
            let ranges = column_ranges(meta.metadata(), row_group, &mask);
            assert_eq!(ranges.len(), 3);
            let fetched: u64 = ranges.iter().map(|r| r.end - r.start).sum();
            let group = meta.metadata().row_group(row_group);
            let payload_bytes = group.column(0).byte_range().1;
            assert!(
                fetched * 5 < payload_bytes,
                "fetched {fetched} bytes, the unread column has {payload_bytes}"
            );
            // Decode from just those ranges, as from an object store.
            let parts = ranges
                .iter()
                .map(|r| {
                    let bytes = bytes::Bytes::copy_from_slice(
                        &file_bytes[r.start as usize..r.end as usize],
                    );
                    (r.start, bytes)
                })
                .collect();
            let input = ParquetInput::Fetched(Fetched::from_parts(file_bytes.len() as u64, parts));
            let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(input, meta)
                .with_row_groups(vec![row_group])
                .with_projection(mask)
                .build()
                .unwrap();
            let rows: usize = batches.map(|b| b.unwrap().num_rows()).sum();
            assert_eq!(rows as u64, unit.size_hint().rows.unwrap());
        }
    }

    /// The `ts` statistics (a bound on the row group's event times) agree with the latest
    /// valid purchase read, whatever the column's type (floored to ms like the reader).
    #[test]
    fn statistics_give_the_same_max_ts_as_reading_the_rows() {
        let dir = tempfile::tempdir().unwrap();
        let base_ms: i64 = 1_700_000_000_123;
        let ts = [base_ms - 5_000, base_ms, base_ms - 77];
        // (name, column, its latest time as the statistics give it, as the rows give it).
        let cases: Vec<(&str, ArrayRef, Option<i64>, Option<i64>)> = vec![
            (
                "ms",
                Arc::new(Int64Array::from(ts.to_vec())),
                Some(base_ms),
                Some(base_ms),
            ),
            (
                "s",
                Arc::new(
                    TimestampSecondArray::from(ts.iter().map(|t| t / 1000).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
                Some(base_ms / 1000 * 1000),
                Some(base_ms / 1000 * 1000),
            ),
            (
                "us",
                Arc::new(TimestampMicrosecondArray::from(
                    ts.iter().map(|t| t * 1000 + 999).collect::<Vec<_>>(),
                )),
                Some(base_ms),
                Some(base_ms),
            ),
            (
                "ns",
                Arc::new(TimestampNanosecondArray::from(
                    ts.iter().map(|t| t * 1_000_000 + 1).collect::<Vec<_>>(),
                )),
                Some(base_ms),
                Some(base_ms),
            ),
            (
                "i32",
                Arc::new(Int32Array::from(vec![5, 9, -3])),
                Some(9),
                Some(9),
            ),
            (
                "text",
                strings(&[Some("1970-01-01T00:00:01Z"), Some("7"), None]),
                None,
                Some(1000),
            ),
            (
                "negative",
                Arc::new(Int64Array::from(vec![-5, -9, -3])),
                Some(-3),
                None,
            ),
        ];
        for (name, column, stats, read) in cases {
            let path = dir.path().join(format!("{name}.parquet"));
            let rows = column.len();
            write(
                &path,
                vec![
                    ("item_id", strings(&vec![Some("a"); rows])),
                    ("category", strings(&vec![Some("x"); rows])),
                    ("ts", column),
                ],
                10,
            );
            let units = list_units(&[&path], None).unwrap();
            assert_eq!(units[0].ts_max, stats, "{name}");
            assert_eq!(
                crate::files::max_event_time(&units[0]).unwrap(),
                read,
                "{name}"
            );
        }
    }

    /// A row group's latest valid purchase is read, not taken from its `ts` statistics, which
    /// count rows that are bad (or have quantity 0) too.
    #[test]
    fn max_event_time_is_that_of_valid_purchases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad-late.parquet");
        write(
            &path,
            vec![
                ("item_id", strings(&[Some("a"), Some("b"), None, Some("d")])),
                (
                    "category",
                    strings(&[Some("x"), Some("x//y"), Some("x"), Some("x")]),
                ),
                ("ts", Arc::new(Int64Array::from(vec![10, 50, 40, 60]))),
                ("quantity", Arc::new(Int64Array::from(vec![1, 1, 1, 0]))),
            ],
            10,
        );
        let units = list_units(&[&path], None).unwrap();
        assert_eq!(units[0].ts_max, Some(60));
        assert_eq!(crate::files::max_event_time(&units[0]).unwrap(), Some(10));
    }

    /// Categories read as a dictionary are checked once per value: over several batches and
    /// row groups, every row gets what checking it alone gives (the same purchase, or the same
    /// error, item errors first).
    #[test]
    fn dictionary_categories_checked_once_equal_row_by_row_checks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dictionary.parquet");
        let categories = ["a/b", "a//b", "/c", "a", "d/e/f", "g/"];
        let rows = 3 * BATCH_ROWS + 17;
        let item = |row: usize| {
            if row % 101 == 0 {
                String::new()
            } else {
                format!("i{}", row % 37)
            }
        };
        // The second row group meets the values in another order: another dictionary.
        let category = |row: usize| {
            let at = (row * 7 + row / 5) % categories.len();
            categories[if row < 2 * BATCH_ROWS {
                at
            } else {
                categories.len() - 1 - at
            }]
        };
        write(
            &path,
            vec![
                (
                    "item_id",
                    Arc::new(StringArray::from_iter_values((0..rows).map(item))),
                ),
                (
                    "category",
                    Arc::new(StringArray::from_iter_values((0..rows).map(category))),
                ),
                (
                    "ts",
                    Arc::new(Int64Array::from_iter_values(
                        (0..rows as i64).map(|r| r * 1000),
                    )),
                ),
            ],
            2 * BATCH_ROWS,
        );
        let (out, bad, units) = read_all(&path);
        assert_eq!(units, 2);
        let (mut want_out, mut want_bad) = (Vec::new(), Vec::new());
        for row in 0..rows {
            let (item, category) = (item(row), category(row));
            match Purchase::from_fields(&item, category, row as i64 * 1000, 1) {
                Ok(Some(purchase)) => want_out.push(purchase),
                Ok(None) => {}
                Err(error) => {
                    want_bad.push((row_position(&path.display().to_string(), row as u64), error))
                }
            }
        }
        assert!(!want_out.is_empty() && want_bad.len() > rows / 3);
        assert_eq!(out, want_out);
        let got_bad: Vec<_> = bad.into_iter().map(|b| (b.position, b.error)).collect();
        assert_eq!(got_bad, want_bad);
    }

    #[test]
    fn nulls_and_bad_values_are_bad_records_with_row_positions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nulls.parquet");
        write(
            &path,
            vec![
                (
                    "item_id",
                    strings(&[
                        Some("a"),
                        None,
                        Some("c"),
                        Some("d"),
                        Some(""),
                        Some("f"),
                        Some("g"),
                    ]),
                ),
                (
                    "category",
                    strings(&[
                        Some("x"),
                        Some("x"),
                        None,
                        Some("x"),
                        Some("x"),
                        Some("x//y"),
                        Some("x"),
                    ]),
                ),
                (
                    "ts",
                    strings(&[
                        Some("1"),
                        Some("2"),
                        Some("3"),
                        None,
                        Some("5"),
                        Some("6"),
                        Some("later"),
                    ]),
                ),
                (
                    "quantity",
                    Arc::new(Int64Array::from(vec![
                        None,
                        Some(1),
                        Some(1),
                        Some(1),
                        Some(1),
                        Some(1),
                        Some(2),
                    ])),
                ),
            ],
            4,
        );
        let (out, bad, units) = read_all(&path);
        assert_eq!(units, 2);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].quantity, 1, "null quantity is 1");
        let label = path.display().to_string();
        let got: Vec<_> = bad
            .iter()
            .map(|b| (b.position.clone(), b.error.clone()))
            .collect();
        assert_eq!(
            got[0],
            (
                format!("{label}:row 1"),
                RecordError::MissingField("item_id")
            )
        );
        assert_eq!(
            got[1],
            (
                format!("{label}:row 2"),
                RecordError::MissingField("category")
            )
        );
        assert_eq!(
            got[2],
            (format!("{label}:row 3"), RecordError::MissingField("ts"))
        );
        assert_eq!(got[3], (format!("{label}:row 4"), RecordError::EmptyItemId));
        assert_eq!(
            got[4],
            (format!("{label}:row 5"), RecordError::EmptyCategorySegment)
        );
        assert!(
            matches!(&got[5], (p, RecordError::BadTimestamp(_)) if *p == format!("{label}:row 6"))
        );
        let raw: serde_json::Value = serde_json::from_str(&bad[5].raw).unwrap();
        assert_eq!(
            raw,
            serde_json::json!({"item_id":"g","category":"x","ts":"later","quantity":2})
        );
        let raw: serde_json::Value = serde_json::from_str(&bad[0].raw).unwrap();
        assert_eq!(raw["item_id"], serde_json::Value::Null);
    }

    #[test]
    fn schema_errors_name_file_column_and_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nots.parquet");
        write(
            &path,
            vec![
                ("item_id", strings(&[Some("a")])),
                ("category", strings(&[Some("x")])),
            ],
            10,
        );
        let err = open_unit(&ReadUnit::new(&path, Format::Parquet, Some(0)))
            .err()
            .unwrap();
        assert!(matches!(
            err,
            SourceError::MissingColumn { column: "ts", .. }
        ));
        assert!(err.to_string().contains("nots.parquet"));
        let path = dir.path().join("floatq.parquet");
        write(
            &path,
            vec![
                ("item_id", strings(&[Some("a")])),
                ("category", strings(&[Some("x")])),
                ("ts", Arc::new(Int64Array::from(vec![1]))),
                (
                    "quantity",
                    Arc::new(arrow_array::Float64Array::from(vec![1.5])),
                ),
            ],
            10,
        );
        let err = open_unit(&ReadUnit::new(&path, Format::Parquet, Some(0)))
            .err()
            .unwrap();
        let text = err.to_string();
        assert!(matches!(
            err,
            SourceError::UnsupportedColumnType {
                column: "quantity",
                ..
            }
        ));
        assert!(
            text.contains("floatq.parquet")
                && text.contains("quantity")
                && text.contains("Float64"),
            "{text}"
        );
        let err = open_unit(&ReadUnit::new(&path, Format::Parquet, Some(5)))
            .err()
            .unwrap();
        assert!(matches!(err, SourceError::Parquet { .. }));
    }
}

//! Event-time bounds of Parquet row groups from the `ts` column's statistics (no data read).

use arrow_schema::{DataType, TimeUnit as ArrowUnit};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

/// How a stored `ts` integer becomes epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

/// The leaf index of the top-level `ts` column, if it is a plain column.
pub(crate) fn ts_leaf(meta: &ParquetMetaData) -> Option<usize> {
    let schema = meta.file_metadata().schema_descr();
    (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == ["ts"])
}

/// The Arrow type the reader decodes `ts` as (the file's embedded Arrow schema, if any, hints
/// it), if the footer tells.
fn ts_arrow_type(meta: &ParquetMetaData) -> Option<DataType> {
    let file = meta.file_metadata();
    let schema = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata()).ok()?;
    let field = schema.field_with_name("ts").ok()?;
    Some(field.data_type().clone())
}

/// How the `ts` column's stored integers become epoch ms, if their statistics order like event
/// times: a Parquet timestamp of ms, µs or ns; else (a plain signed integer) as the reader takes
/// it: seconds for an Arrow second timestamp (stored as a plain INT64), ms for integers.
fn ts_scale(meta: &ParquetMetaData, leaf: usize) -> Option<Scale> {
    let column = meta.file_metadata().schema_descr().column(leaf);
    if !matches!(
        column.physical_type(),
        PhysicalType::INT64 | PhysicalType::INT32
    ) {
        return None;
    }
    let plain = match column.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => {
            return Some(match t.unit {
                TimeUnit::MILLIS => Scale::Millis,
                TimeUnit::MICROS => Scale::Micros,
                TimeUnit::NANOS => Scale::Nanos,
            })
        }
        Some(LogicalType::Integer(int)) => int.is_signed,
        Some(_) => false,
        None => match column.converted_type() {
            ConvertedType::TIMESTAMP_MILLIS => return Some(Scale::Millis),
            ConvertedType::TIMESTAMP_MICROS => return Some(Scale::Micros),
            ConvertedType::NONE
            | ConvertedType::INT_8
            | ConvertedType::INT_16
            | ConvertedType::INT_32
            | ConvertedType::INT_64 => true,
            _ => false,
        },
    };
    if !plain {
        return None;
    }
    match ts_arrow_type(meta)? {
        DataType::Timestamp(ArrowUnit::Second, _) => Some(Scale::Seconds),
        DataType::Timestamp(ArrowUnit::Millisecond, _) => Some(Scale::Millis),
        DataType::Timestamp(ArrowUnit::Microsecond, _) => Some(Scale::Micros),
        DataType::Timestamp(ArrowUnit::Nanosecond, _) => Some(Scale::Nanos),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Some(Scale::Millis),
        _ => None,
    }
}

/// The largest `ts` (epoch ms, floored like the reader does) of a row group, from exact
/// statistics only; `None` when the file does not tell (no statistics, inexact ones, all
/// nulls, a text `ts`, …).
pub(crate) fn row_group_max_ts(meta: &ParquetMetaData, row_group: usize) -> Option<i64> {
    let leaf = ts_leaf(meta)?;
    let scale = ts_scale(meta, leaf)?;
    let stats = meta
        .row_groups()
        .get(row_group)?
        .column(leaf)
        .statistics()?;
    let max = match stats {
        Statistics::Int64(s) if s.max_is_exact() => *s.max_opt()?,
        Statistics::Int32(s) if s.max_is_exact() => i64::from(*s.max_opt()?),
        _ => return None,
    };
    Some(match scale {
        Scale::Seconds => max.checked_mul(1000)?,
        Scale::Millis => max,
        Scale::Micros => max.div_euclid(1000),
        Scale::Nanos => max.div_euclid(1_000_000),
    })
}

//! Event-time bounds of Parquet row groups from the `ts` column's statistics (no data read).

use parquet::basic::{ConvertedType, LogicalType, TimeUnit, Type as PhysicalType};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;

/// How a stored `ts` integer becomes epoch milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Scale {
    Millis,
    Micros,
    Nanos,
}

/// The leaf index of the top-level `ts` column, if it is a plain column.
pub(crate) fn ts_leaf(meta: &ParquetMetaData) -> Option<usize> {
    let schema = meta.file_metadata().schema_descr();
    (0..schema.num_columns()).find(|&i| schema.column(i).path().parts() == ["ts"])
}

/// How the `ts` column's integers are scaled, if they are integers or timestamps whose
/// statistics order like event times (signed integers, timestamps of ms, µs or ns).
fn ts_scale(meta: &ParquetMetaData, leaf: usize) -> Option<Scale> {
    let column = meta.file_metadata().schema_descr().column(leaf);
    if !matches!(
        column.physical_type(),
        PhysicalType::INT64 | PhysicalType::INT32
    ) {
        return None;
    }
    match column.logical_type_ref() {
        Some(LogicalType::Timestamp(t)) => Some(match t.unit {
            TimeUnit::MILLIS => Scale::Millis,
            TimeUnit::MICROS => Scale::Micros,
            TimeUnit::NANOS => Scale::Nanos,
        }),
        Some(LogicalType::Integer(int)) if int.is_signed => Some(Scale::Millis),
        Some(_) => None,
        None => match column.converted_type() {
            ConvertedType::NONE
            | ConvertedType::INT_8
            | ConvertedType::INT_16
            | ConvertedType::INT_32
            | ConvertedType::INT_64
            | ConvertedType::TIMESTAMP_MILLIS => Some(Scale::Millis),
            ConvertedType::TIMESTAMP_MICROS => Some(Scale::Micros),
            _ => None,
        },
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
        Scale::Millis => max,
        Scale::Micros => max.div_euclid(1000),
        Scale::Nanos => max.div_euclid(1_000_000),
    })
}

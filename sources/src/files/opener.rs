//! Opens a worker's read units in order, fetching the next unit's bytes from the object store
//! while the current one is decoded.

use super::location::Location;
use super::object::Prefetch;
use super::parquet::{ParquetPlan, ParquetReader};
use super::{open_unit, Format, ReadUnit, RecordReader};
use crate::error::SourceError;

/// A reader, or why there is none.
pub type Opened = Result<Box<dyn RecordReader + Send>, SourceError>;

/// A unit on its way to being read.
enum Next {
    /// Opened when its turn comes (local files: nothing to gain by opening early).
    Later(ReadUnit),
    /// Opened already (text objects start streaming their first bytes when opened).
    Ready(ReadUnit, Opened),
    /// A Parquet row group of an object whose column chunks are being fetched.
    Fetching(Box<ParquetPlan>, Vec<std::ops::Range<u64>>, Prefetch),
}

/// The readers of a list of units, in order. While the caller reads one unit, the next one's
/// bytes are on their way (one unit ahead: the memory of one row group's read columns).
pub struct Opener {
    units: Box<dyn Iterator<Item = ReadUnit>>,
    next: Option<Next>,
}

impl Opener {
    /// Opens `units` in order (taking each from the iterator one unit ahead of its reading).
    pub fn new(units: impl IntoIterator<Item = ReadUnit> + 'static) -> Self {
        Opener {
            units: Box::new(units.into_iter()),
            next: None,
        }
    }
}

fn start(unit: ReadUnit) -> Next {
    let Location::Object(object) = &unit.location else {
        return Next::Later(unit);
    };
    if unit.format != Format::Parquet {
        let opened = open_unit(&unit);
        return Next::Ready(unit, opened);
    }
    let plan = match ParquetReader::plan(&unit) {
        Ok(plan) => plan,
        Err(e) => return Next::Ready(unit, Err(e)),
    };
    let ranges = plan.ranges();
    let fetch = object.bucket.spawn_ranges(&object.key, ranges.clone());
    Next::Fetching(Box::new(plan), ranges, fetch)
}

fn finish(next: Next) -> (ReadUnit, Opened) {
    match next {
        Next::Later(unit) => {
            let opened = open_unit(&unit);
            (unit, opened)
        }
        Next::Ready(unit, opened) => (unit, opened),
        Next::Fetching(plan, ranges, fetch) => {
            let unit = plan.unit().clone();
            let opened = fetch.wait().and_then(|bytes| {
                let input = plan.fetched(&ranges, bytes);
                ParquetReader::from_plan(*plan, input)
                    .map(|reader| Box::new(reader) as Box<dyn RecordReader + Send>)
            });
            (unit, opened)
        }
    }
}

impl Iterator for Opener {
    type Item = (ReadUnit, Opened);

    fn next(&mut self) -> Option<Self::Item> {
        let current = match self.next.take() {
            Some(next) => next,
            None => start(self.units.next()?),
        };
        let opened = finish(current);
        self.next = self.units.next().map(start);
        Some(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_units_open_in_order_errors_included() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        std::fs::write(&a, "{\"item_id\":\"x\",\"category\":\"c\",\"ts\":1}\n").unwrap();
        let missing = dir.path().join("gone.csv");
        let units = vec![
            ReadUnit::new(&a, Format::Jsonl, None),
            ReadUnit::new(&missing, Format::Csv, None),
            ReadUnit::new(&a, Format::Jsonl, None),
        ];
        let opened: Vec<(ReadUnit, Opened)> = Opener::new(units.clone()).collect();
        assert_eq!(opened.len(), 3);
        for ((unit, result), want) in opened.into_iter().zip(&units) {
            assert_eq!(&unit, want);
            assert_eq!(
                result.is_ok(),
                unit.location.to_string().ends_with("a.jsonl")
            );
        }
    }
}

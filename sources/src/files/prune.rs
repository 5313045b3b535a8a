//! Pruning: read units whose every row is older than a cut-off are dropped before any is read.

use std::collections::HashMap;

use super::{Format, ReadUnit};

/// What [`prune`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Files none of whose units is left (text files, and Parquet files whose every row group
    /// was dropped).
    pub files: u64,
    /// Parquet row groups dropped (whether or not their whole file was).
    pub row_groups: u64,
    /// Units dropped because of their `dt=` partition.
    pub by_partition: u64,
    /// Units dropped because of their `ts` statistics (and not their partition).
    pub by_statistics: u64,
    /// Rows in the dropped units, where known (Parquet).
    pub rows: u64,
    /// Bytes of the dropped units (whole text files, compressed Parquet row groups).
    pub bytes: u64,
}

impl Pruned {
    /// Units dropped.
    pub fn units(&self) -> u64 {
        self.by_partition + self.by_statistics
    }
}

/// Drops the units none of whose rows can have `ts > after_ms`: Parquet row groups whose
/// exact `ts` statistics say so, and (with `trust_partitions`) files in a `dt=` day that ends
/// at or before `after_ms + 1`. Purchases at or before `after_ms` are skipped by the reader
/// anyway, so this changes no result; it only saves reading them. The order of the units
/// left is kept.
pub fn prune(
    units: Vec<ReadUnit>,
    after_ms: i64,
    trust_partitions: bool,
) -> (Vec<ReadUnit>, Pruned) {
    let mut pruned = Pruned::default();
    // Per file (by path or URL): (units listed, units dropped).
    let mut per_file: HashMap<String, (u64, u64)> = HashMap::new();
    let mut kept = Vec::with_capacity(units.len());
    for unit in units {
        let by_partition =
            trust_partitions && unit.partitions.max_ts().is_some_and(|max| max <= after_ms);
        let by_statistics = unit.ts_max.is_some_and(|max| max <= after_ms);
        let tally = per_file.entry(unit.location.to_string()).or_default();
        tally.0 += 1;
        if !(by_partition || by_statistics) {
            kept.push(unit);
            continue;
        }
        tally.1 += 1;
        if by_partition {
            pruned.by_partition += 1;
        } else {
            pruned.by_statistics += 1;
        }
        if unit.format == Format::Parquet {
            pruned.row_groups += 1;
        }
        pruned.rows += unit.size.rows.unwrap_or(0);
        pruned.bytes += unit.size.bytes;
    }
    pruned.files = per_file
        .values()
        .filter(|(listed, dropped)| listed == dropped)
        .count() as u64;
    (kept, pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{Partitions, UnitSize};

    fn unit(path: &str, row_group: Option<usize>, ts_max: Option<i64>) -> ReadUnit {
        let format = if row_group.is_some() {
            Format::Parquet
        } else {
            Format::Csv
        };
        ReadUnit {
            ts_max,
            size: UnitSize {
                bytes: 10,
                rows: row_group.map(|_| 100),
            },
            ..ReadUnit::new(std::path::PathBuf::from(path), format, row_group).with_partitions()
        }
    }

    #[test]
    fn partitions_and_statistics() {
        // 2024-06-30 starts at 1_719_705_600_000.
        let day = 1_719_705_600_000;
        let units = vec![
            unit("lake/dt=2024-06-29/a.csv", None, None),
            unit("lake/dt=2024-06-30/b.csv", None, None),
            unit("lake/c.parquet", Some(0), Some(day - 5)),
            unit("lake/c.parquet", Some(1), Some(day + 5)),
            unit("lake/d.parquet", Some(0), Some(day - 1)),
            unit("lake/dt=2024-06-29/e.parquet", Some(0), None),
            unit("lake/f.csv", None, None),
        ];
        assert_eq!(
            units[1].partitions,
            Partitions::from_folders(&["lake", "dt=2024-06-30"])
        );
        // Cut-off: the last millisecond of 2024-06-29.
        let (kept, pruned) = prune(units.clone(), day - 1, true);
        let names: Vec<String> = kept
            .iter()
            .map(|u| format!("{}#{:?}", u.location, u.row_group))
            .collect();
        assert_eq!(
            names,
            [
                "lake/dt=2024-06-30/b.csv#None",
                "lake/c.parquet#Some(1)",
                "lake/f.csv#None"
            ]
        );
        assert_eq!(
            pruned,
            Pruned {
                files: 3, // a.csv, d.parquet, e.parquet
                row_groups: 3,
                by_partition: 2,
                by_statistics: 2,
                rows: 300,
                bytes: 40,
            }
        );
        assert_eq!(pruned.units(), 4);
        // One millisecond earlier, the 29th's last millisecond may hold a purchase.
        let (kept, pruned) = prune(units.clone(), day - 2, true);
        assert_eq!(kept.len(), 6);
        assert_eq!((pruned.by_partition, pruned.by_statistics), (0, 1));
        // Partitions not trusted: statistics only.
        let (kept, pruned) = prune(units, day - 1, false);
        assert_eq!(kept.len(), 5);
        assert_eq!(
            (pruned.by_partition, pruned.by_statistics, pruned.files),
            (0, 2, 1)
        );
    }
}

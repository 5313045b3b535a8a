//! Where purchases come from: files (JSON Lines, CSV, Parquet), Kafka, the synthetic generator, and the dead-letter output for bad records.
#![warn(missing_docs)]

pub mod availability;
pub mod availability_topic;
pub mod bad;
pub mod dead_letter;
pub mod error;
pub mod files;
pub mod generator;
pub mod intern;
pub mod kafka;
pub mod position;
#[cfg(test)]
mod props;
pub mod writer;

use serde::{Deserialize, Serialize};

pub use availability::{AvailabilityConfig, AvailabilityRecord};
pub use bad::BadRecord;
pub use dead_letter::DeadLetter;
pub use error::{SettingError, SourceError};
pub use files::{
    list_units, list_units_with, open_unit, read_unit_all, units_for_worker, FilesConfig, Format,
    LakeConfig, Location, ReadUnit, RecordReader, S3Config, UnitSize,
};
pub use generator::{history, Catalog, Generator, GeneratorConfig, History, Rate};
pub use intern::Interner;
pub use kafka::KafkaConfig;
pub use writer::PurchaseWriter;

/// A configured source, tagged by `type`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    /// `type = "files"`: files or folders of JSON Lines, CSV or Parquet.
    Files(FilesConfig),
    /// `type = "generator"`: synthetic purchases.
    Generator(GeneratorConfig),
    /// `type = "kafka"`: live purchases from a Kafka topic.
    Kafka(KafkaConfig),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_config_is_tagged_and_strict() {
        let c: SourceConfig =
            serde_json::from_str(r#"{"type":"files","paths":["data/"],"format":"csv"}"#).unwrap();
        assert_eq!(
            c,
            SourceConfig::Files(FilesConfig {
                format: Some(Format::Csv),
                ..FilesConfig::new(vec!["data/".into()])
            })
        );
        let c: SourceConfig =
            serde_json::from_str(r#"{"type":"generator","rate":"max","items":10}"#).unwrap();
        let SourceConfig::Generator(g) = c else {
            panic!("not a generator: {c:?}")
        };
        assert_eq!((g.rate, g.items, g.fanout), (Rate::Max, 10, 8));
        let c: SourceConfig = serde_json::from_str(r#"{"type":"generator"}"#).unwrap();
        assert_eq!(c, SourceConfig::Generator(GeneratorConfig::default()));
        assert!(
            serde_json::from_str::<SourceConfig>(r#"{"type":"files","paths":[],"x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<SourceConfig>(r#"{"type":"generator","ratee":1}"#).is_err());
        // A Kafka source needs brokers and a topic.
        assert!(serde_json::from_str::<SourceConfig>(r#"{"type":"kafka"}"#).is_err());
        let c: SourceConfig =
            serde_json::from_str(r#"{"type":"kafka","brokers":"b:9092","topic":"t"}"#).unwrap();
        assert_eq!(c, SourceConfig::Kafka(KafkaConfig::new("b:9092", "t")));
        assert!(serde_json::from_str::<SourceConfig>(
            r#"{"type":"kafka","brokers":"b","topic":"t","groupp":"g"}"#
        )
        .is_err());
        assert!(serde_json::from_str::<SourceConfig>(r#"{"paths":[]}"#).is_err());
        let text =
            serde_json::to_string(&SourceConfig::Generator(GeneratorConfig::default())).unwrap();
        assert!(text.starts_with(r#"{"type":"generator""#), "{text}");
        assert_eq!(
            serde_json::from_str::<SourceConfig>(&text).unwrap(),
            SourceConfig::Generator(GeneratorConfig::default())
        );
    }
}

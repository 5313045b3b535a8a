//! The served lists in a checkpoint: a file of every list, then files of the lists that changed
//! since (bincode, zstd-compressed).

use serde::{Deserialize, Serialize};
use topsellers_model::{Snapshot, TopKList};

/// One list file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ListsFile {
    /// The time the lists are as of.
    time_ms: i64,
    lists: Vec<TopKList>,
}

/// zstd's level for list files: fast, and the ids compress well.
const LEVEL: i32 = 3;

/// `lists` as of `time_ms`, encoded.
pub fn encode(time_ms: i64, lists: Vec<TopKList>) -> std::io::Result<Vec<u8>> {
    let file = ListsFile { time_ms, lists };
    let raw = bincode::serialize(&file).map_err(std::io::Error::other)?;
    zstd::encode_all(raw.as_slice(), LEVEL)
}

/// A list file's lists, as a snapshot of their time.
pub fn decode(bytes: &[u8]) -> std::io::Result<Snapshot> {
    let raw = zstd::decode_all(bytes)?;
    let file: ListsFile = bincode::deserialize(&raw).map_err(std::io::Error::other)?;
    Ok(Snapshot {
        time_ms: file.time_ms,
        lists: file.lists,
        whole: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use topsellers_model::{RankedItem, ScoreKey};

    #[test]
    fn round_trips() {
        let lists = vec![TopKList {
            profile: 1,
            category: "bücher/sci fi".into(),
            items: vec![RankedItem {
                item_id: "x\"1".into(),
                score: ScoreKey {
                    exp: -3,
                    mantissa: 1.25,
                },
                scores: Some(
                    vec![
                        None,
                        Some(ScoreKey {
                            exp: 7,
                            mantissa: 1.5,
                        }),
                    ]
                    .into(),
                ),
            }],
        }];
        let bytes = encode(42, lists.clone()).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!((back.time_ms, back.lists), (42, lists));
        assert!(decode(b"not zstd").is_err());
    }
}

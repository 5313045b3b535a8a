//! `GET /v1/movers[/{category}]?short=NAME&long=NAME&limit=N` ("Movers & Shakers"): among the
//! short profile's list of a category, the items whose recent rate most exceeds their long-run
//! rate, `m = (S_short / h_short) / (S_long / h_long)`, ranked by `m` descending, then
//! `item_id`; only items with `S_short ≥ [movers] min_score`.
//!
//! ## Why the answer is exact
//! The candidates are the short profile's served list (its top k). Their `S_long` is not in the
//! long profile's list when they are not in its top k, so the rows carry it: the live operator
//! (`decayed_local_topk`) keeps every profile's sum of a (category, item) side by side on the
//! worker that owns the item, and with `[movers] enabled` (and two or more profiles) each entry
//! it emits carries the item's keys under every profile, taken from the same sums at the same
//! logical time ([`RankedItem::scores`](topsellers_model::RankedItem::scores)). A purchase,
//! return or expiry changes all of an item's sums at once; when it changes another profile's
//! key but not the list's own, the entry is announced again with the new keys. `merge_topk`,
//! the snapshots, the serving table and the checkpoint keep them with the entry, so a served
//! list holds, for each item, `S_long` of the same state as its `S_short`, both decayed here to
//! the list's `as_of`. With movers off the rows carry nothing (the default hot path).

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use topsellers_model::{format_rfc3339_ms, Profile, RankedItem};

use crate::api_error::ApiError;
use crate::etag::ETag;
use crate::json;
use crate::request::{decode_category, parse_limit, utf8};
use crate::table::ServingTable;

/// `/v1/movers` settings (`[movers]` in the config).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoversConfig {
    /// Serve `/v1/movers`: lists then carry every profile's score of each item (more work per
    /// change and more memory per listed item, with two or more profiles). Default: `true`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Least short-profile score (decayed purchases as of the list's time) an item needs to be
    /// a mover, so that one purchase of a new item does not top the list. Default: `3.0`.
    #[serde(default = "default_min_score")]
    pub min_score: f64,
}

fn default_enabled() -> bool {
    true
}

fn default_min_score() -> f64 {
    3.0
}

impl Default for MoversConfig {
    fn default() -> Self {
        MoversConfig {
            enabled: default_enabled(),
            min_score: default_min_score(),
        }
    }
}

/// One mover.
#[derive(Clone, Debug, PartialEq)]
pub struct Mover<'a> {
    /// The item.
    pub item_id: &'a str,
    /// `S_short` as of the list's time.
    pub score: f64,
    /// `m = (S_short / h_short) / (S_long / h_long)`.
    pub momentum: f64,
}

/// Why movers cannot be computed from a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCarried;

/// The movers among `candidates` (items of the short profile's list, as of `as_of_ms`), best
/// first: items with `S_short ≥ min_score` and a positive `S_long`, by momentum descending,
/// then `item_id`.
/// `NotCarried` when an item lacks the long profile's score (a list from a service with
/// movers off).
pub fn movers<'a>(
    candidates: impl IntoIterator<Item = &'a RankedItem>,
    as_of_ms: i64,
    (short_index, short): (usize, &Profile),
    (long_index, long): (usize, &Profile),
    min_score: f64,
) -> Result<Vec<Mover<'a>>, NotCarried> {
    let mut movers = Vec::new();
    for item in candidates {
        let s_short = item.score.score_at(as_of_ms, short.half_life_ms);
        let long_key = if long_index == short_index {
            Some(item.score)
        } else {
            let scores = item.scores.as_ref().ok_or(NotCarried)?;
            *scores.get(long_index).ok_or(NotCarried)?
        };
        let Some(long_key) = long_key else {
            continue; // S_long ≤ 0 (returns): no long-run rate to compare with
        };
        if s_short < min_score {
            continue;
        }
        let s_long = long_key.score_at(as_of_ms, long.half_life_ms);
        let momentum = (s_short / short.half_life_ms as f64) / (s_long / long.half_life_ms as f64);
        movers.push(Mover {
            item_id: &item.item_id,
            score: s_short,
            momentum,
        });
    }
    movers.sort_by(|a, b| {
        b.momentum
            .total_cmp(&a.momentum)
            .then_with(|| a.item_id.as_bytes().cmp(b.item_id.as_bytes()))
    });
    Ok(movers)
}

/// The profile `/v1/movers` uses by default: the shortest (`longest = false`) or longest
/// half-life, the first configured among equals.
fn default_profile(profiles: &[Profile], longest: bool) -> usize {
    let mut best = 0;
    for (at, profile) in profiles.iter().enumerate() {
        let half_life = profile.half_life_ms;
        let better = if longest {
            half_life > profiles[best].half_life_ms
        } else {
            half_life < profiles[best].half_life_ms
        };
        if better {
            best = at;
        }
    }
    best
}

/// The `/v1/movers[/{category}]` document and its entity tag; `rest` is what follows
/// `/v1/movers`, `query` the query string.
pub(crate) fn answer(
    table: &ServingTable,
    config: &MoversConfig,
    rest: &str,
    query: Option<&str>,
) -> Result<(ETag, Bytes), ApiError> {
    if !config.enabled {
        return Err(ApiError::NoSuchRoute(
            "/v1/movers (off: [movers] enabled = false)".to_owned(),
        ));
    }
    if table.published_time_ms().is_none() {
        return Err(ApiError::NotReady);
    }
    let category = decode_category(rest)?;
    let (mut short, mut long, mut limit) = (None, None, None);
    for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match &*key {
            "short" => short = Some(utf8("short", value)?),
            "long" => long = Some(utf8("long", value)?),
            "limit" => limit = Some(parse_limit(&value)?),
            _ => {}
        }
    }
    let profiles = table.profiles();
    let index = |name: Option<&str>, longest: bool| match name {
        None => Ok(default_profile(profiles, longest)),
        Some(name) => profiles
            .index(name)
            .ok_or_else(|| ApiError::UnknownProfile(name.to_owned())),
    };
    let short = index(short.as_deref(), false)?;
    let long = index(long.as_deref(), true)?;
    let list = table
        .get(short, &category)
        .ok_or_else(|| ApiError::UnknownCategory(category.to_string()))?;
    let as_of = list.as_of_ms();
    // Among the candidates the storefront may show: an unavailable item is never a mover.
    let availability = table.availability();
    let candidates = list.list().items.iter().filter(|item| {
        availability.is_none_or(|availability| availability.is_available(&item.item_id))
    });
    let found = movers(
        candidates,
        as_of,
        (short, &profiles[short]),
        (long, &profiles[long]),
        config.min_score,
    )
    .map_err(|NotCarried| {
        ApiError::Unavailable(format!(
            "the list of {category:?} under {:?} does not carry the other profiles' scores yet \
             (restored from a checkpoint written with movers off: wait for the catch-up)",
            profiles[short].name
        ))
    })?;
    let limit = limit.unwrap_or_else(|| table.k());
    let mut body = Vec::with_capacity(128 + found.len().min(limit) * 96);
    body.extend_from_slice(b"{\"category\":");
    json::push_str(&mut body, &category);
    body.extend_from_slice(b",\"short\":");
    json::push_str(&mut body, &profiles[short].name);
    body.extend_from_slice(b",\"long\":");
    json::push_str(&mut body, &profiles[long].name);
    body.extend_from_slice(b",\"as_of\":\"");
    body.extend_from_slice(format_rfc3339_ms(as_of).as_bytes());
    body.extend_from_slice(b"\",\"items\":[");
    for (at, mover) in found.iter().take(limit).enumerate() {
        if at > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b"{\"rank\":");
        json::push_int(&mut body, at + 1);
        body.extend_from_slice(b",\"item_id\":");
        json::push_str(&mut body, mover.item_id);
        body.extend_from_slice(b",\"score\":");
        json::push_f64(&mut body, mover.score);
        body.extend_from_slice(b",\"momentum\":");
        json::push_f64(&mut body, mover.momentum);
        body.push(b'}');
    }
    body.extend_from_slice(b"]}");
    let etag = ETag::new(xxhash_rust::xxh3::xxh3_64(&body), None);
    Ok((etag, Bytes::from(body)))
}

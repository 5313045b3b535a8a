//! `GET /openapi.json`: the API's OpenAPI 3.1 contract, kept in the repository as
//! `sinks/openapi.json` and built into the binary; tagged and compressed once, at first use.

use std::sync::OnceLock;

use bytes::Bytes;

use crate::encoding::Encoded;
use crate::etag::ETag;

/// The document as kept in the repository.
pub const OPENAPI_JSON: &[u8] = include_bytes!("../openapi.json");

/// The document with its entity tag and compressed copies.
#[derive(Debug)]
pub(crate) struct OpenApiDoc {
    pub(crate) json: Bytes,
    pub(crate) etag: ETag,
    pub(crate) encoded: Encoded,
}

/// The document, prepared on first use.
pub(crate) fn doc() -> &'static OpenApiDoc {
    static DOC: OnceLock<OpenApiDoc> = OnceLock::new();
    DOC.get_or_init(|| OpenApiDoc {
        json: Bytes::from_static(OPENAPI_JSON),
        etag: ETag::new(xxhash_rust::xxh3::xxh3_64(OPENAPI_JSON), None),
        encoded: Encoded::compress(OPENAPI_JSON),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_an_openapi_3_1_document() {
        let doc: serde_json::Value = serde_json::from_slice(OPENAPI_JSON).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."));
        assert!(doc["paths"]["/openapi.json"]["get"].is_object());
    }
}

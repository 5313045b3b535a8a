//! S3 and S3-compatible object stores: settings, one client per bucket on a small tokio runtime
//! owned by the source, and blocking calls (list, head, ranged GETs) for the plain worker threads.

use std::collections::HashMap;
use std::future::Future;
use std::io::Read;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::{SettingError, SourceError};

/// Bytes fetched per ranged GET when streaming a text object.
const STREAM_CHUNK_BYTES: u64 = 8 << 20;

/// How to reach S3 (`[s3]` in the config file). Credentials are never configured here: they
/// come from the usual AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`, web identity, container or instance credentials).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:9000`. Default `""`:
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT`) when set, else AWS S3 of the region.
    #[serde(default)]
    pub endpoint: String,
    /// Region. Default `""`: `AWS_REGION` (or `AWS_DEFAULT_REGION`) when set, else `us-east-1`.
    #[serde(default)]
    pub region: String,
    /// Allow a plain-`http` endpoint that is not on loopback (an `http` endpoint on
    /// `127.0.0.0/8`, `localhost` or `[::1]` is always allowed). Default: false.
    #[serde(default)]
    pub allow_http: bool,
}

/// Whether an `http://` URL points at this machine.
fn is_loopback_http(endpoint: &str) -> bool {
    let Some(rest) = endpoint.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Opens S3 buckets for one listing: one runtime, one client per bucket.
pub(crate) struct Connector {
    config: S3Config,
    runtime: Option<Arc<tokio::runtime::Runtime>>,
    buckets: HashMap<String, Arc<Bucket>>,
}

impl Connector {
    pub(crate) fn new(config: &S3Config) -> Self {
        Connector {
            config: config.clone(),
            runtime: None,
            buckets: HashMap::new(),
        }
    }

    /// The client of `bucket` (built on first use).
    pub(crate) fn bucket(&mut self, name: &str) -> Result<Arc<Bucket>, SourceError> {
        if let Some(bucket) = self.buckets.get(name) {
            return Ok(bucket.clone());
        }
        let runtime = match &self.runtime {
            Some(runtime) => runtime.clone(),
            None => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("s3")
                    .enable_all()
                    .build()
                    .map_err(|e| SourceError::io(&format!("s3://{name}"), e))?;
                let runtime = Arc::new(runtime);
                self.runtime = Some(runtime.clone());
                runtime
            }
        };
        let store = build_store(&self.config, name)?;
        let bucket = Arc::new(Bucket {
            name: name.to_owned(),
            store: Arc::new(store),
            runtime,
        });
        self.buckets.insert(name.to_owned(), bucket.clone());
        Ok(bucket)
    }
}

fn build_store(config: &S3Config, bucket: &str) -> Result<AmazonS3, SourceError> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    let env_endpoint = ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
        .iter()
        .find_map(|key| std::env::var(key).ok().filter(|v| !v.is_empty()));
    let endpoint = (!config.endpoint.is_empty())
        .then(|| config.endpoint.clone())
        .or(env_endpoint);
    if let Some(endpoint) = &endpoint {
        let endpoint = endpoint.trim_end_matches('/');
        let env_allows =
            std::env::var("AWS_ALLOW_HTTP").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
        let allowed = config.allow_http || env_allows || is_loopback_http(endpoint);
        if endpoint.starts_with("http://") && !allowed {
            return Err(SettingError::new(
                "s3.endpoint",
                format!(
                    "{endpoint} is plain http and not on loopback: use https, or set \
                     `s3.allow_http = true` (or AWS_ALLOW_HTTP=true)"
                ),
            )
            .into());
        }
        builder = builder.with_endpoint(endpoint);
        if endpoint.starts_with("http://") {
            builder = builder.with_allow_http(true);
        }
    }
    if !config.region.is_empty() {
        builder = builder.with_region(&config.region);
    }
    builder
        .build()
        .map_err(|e| SourceError::object_store(&format!("s3://{bucket}"), e))
}

/// One bucket's client and the runtime its requests run on. Every call blocks the calling
/// (plain) thread until the request is done; the runtime's own threads do the I/O.
pub struct Bucket {
    name: String,
    store: Arc<AmazonS3>,
    runtime: Arc<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bucket({})", self.name)
    }
}

impl Bucket {
    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn url(&self, key: &ObjectPath) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Writes the object at `key` whole.
    pub(crate) fn put(&self, key: &ObjectPath, bytes: Vec<u8>) -> Result<(), SourceError> {
        self.block_on(self.store.put(key, bytes.into()))
            .map(|_| ())
            .map_err(|e| SourceError::object_store(&self.url(key), e))
    }

    /// The whole object at `key`, `None` if there is none.
    pub(crate) fn get(&self, key: &ObjectPath) -> Result<Option<Bytes>, SourceError> {
        let fetched = self.block_on(async {
            match self.store.get(key).await {
                Ok(result) => result.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        fetched.map_err(|e| SourceError::object_store(&self.url(key), e))
    }

    /// Removes the object at `key` (nothing if there is none).
    pub(crate) fn delete(&self, key: &ObjectPath) -> Result<(), SourceError> {
        match self.block_on(self.store.delete(key)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(SourceError::object_store(&self.url(key), e)),
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Every object under `prefix` (a folder: `a/b` lists `a/b/…`), in key order.
    pub(crate) fn list(&self, prefix: &ObjectPath) -> Result<Vec<ObjectMeta>, SourceError> {
        let prefix_arg = (!prefix.as_ref().is_empty()).then_some(prefix);
        let mut all: Vec<ObjectMeta> = self
            .block_on(self.store.list(prefix_arg).try_collect())
            .map_err(|e| SourceError::object_store(&self.url(prefix), e))?;
        all.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(all)
    }

    /// The object at `key`, `None` if there is none.
    pub(crate) fn head(&self, key: &ObjectPath) -> Result<Option<ObjectMeta>, SourceError> {
        match self.block_on(self.store.head(key)) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(SourceError::object_store(&self.url(key), e)),
        }
    }

    /// The bytes of `range` of the object.
    pub(crate) fn get_range(
        &self,
        key: &ObjectPath,
        range: Range<u64>,
    ) -> Result<Bytes, SourceError> {
        self.block_on(self.store.get_range(key, range))
            .map_err(|e| SourceError::object_store(&self.url(key), e))
    }

    /// The bytes of several ranges of the object (nearby ranges are fetched together).
    pub(crate) fn get_ranges(
        &self,
        key: &ObjectPath,
        ranges: &[Range<u64>],
    ) -> Result<Vec<Bytes>, SourceError> {
        self.block_on(self.store.get_ranges(key, ranges))
            .map_err(|e| SourceError::object_store(&self.url(key), e))
    }

    /// Starts fetching `ranges` of the object on the runtime; [`Prefetch::wait`] takes the
    /// bytes.
    pub(crate) fn spawn_ranges(&self, key: &ObjectPath, ranges: Vec<Range<u64>>) -> Prefetch {
        let (store, object) = (self.store.clone(), key.clone());
        let handle = self
            .runtime
            .spawn(async move { store.get_ranges(&object, &ranges).await });
        Prefetch {
            handle: Some(handle),
            runtime: self.runtime.clone(),
            url: self.url(key),
        }
    }

    /// Starts fetching `range` on the runtime; the result is awaited later. (The task holds
    /// the store, not the bucket: the runtime must never be dropped by one of its own tasks.)
    fn spawn_range(
        &self,
        key: &ObjectPath,
        range: Range<u64>,
    ) -> tokio::task::JoinHandle<Result<Bytes, object_store::Error>> {
        let (store, key) = (self.store.clone(), key.clone());
        self.runtime
            .spawn(async move { store.get_range(&key, range).await })
    }
}

/// Byte ranges being fetched in the background.
pub(crate) struct Prefetch {
    handle: Option<tokio::task::JoinHandle<Result<Vec<Bytes>, object_store::Error>>>,
    runtime: Arc<tokio::runtime::Runtime>,
    url: String,
}

impl Prefetch {
    /// The fetched bytes, one per range (waits for them).
    pub(crate) fn wait(mut self) -> Result<Vec<Bytes>, SourceError> {
        let Some(handle) = self.handle.take() else {
            return Err(SourceError::object_store(&self.url, "fetch already taken"));
        };
        self.runtime
            .block_on(handle)
            .map_err(|e| SourceError::object_store(&self.url, e))?
            .map_err(|e| SourceError::object_store(&self.url, e))
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

/// A whole object as a [`Read`]: ranged GETs of a few MiB, the next one fetched while the
/// current one is parsed.
pub(crate) struct ObjectRead {
    bucket: Arc<Bucket>,
    key: ObjectPath,
    size: u64,
    /// Where the next fetch starts.
    next: u64,
    current: Bytes,
    pending: Option<tokio::task::JoinHandle<Result<Bytes, object_store::Error>>>,
}

impl ObjectRead {
    /// Reads the object `key` of `size` bytes.
    pub(crate) fn new(bucket: Arc<Bucket>, key: ObjectPath, size: u64) -> Self {
        let mut read = ObjectRead {
            bucket,
            key,
            size,
            next: 0,
            current: Bytes::new(),
            pending: None,
        };
        read.fetch_next();
        read
    }

    fn fetch_next(&mut self) {
        if self.next < self.size {
            let end = (self.next + STREAM_CHUNK_BYTES).min(self.size);
            self.pending = Some(self.bucket.spawn_range(&self.key, self.next..end));
            self.next = end;
        }
    }
}

impl Read for ObjectRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.current.is_empty() {
            let Some(pending) = self.pending.take() else {
                return Ok(0);
            };
            let fetched = self
                .bucket
                .block_on(pending)
                .map_err(std::io::Error::other)?
                .map_err(std::io::Error::other)?;
            self.current = fetched;
            self.fetch_next();
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

impl Drop for ObjectRead {
    fn drop(&mut self) {
        if let Some(pending) = self.pending.take() {
            pending.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_endpoints() {
        assert!(is_loopback_http("http://127.0.0.1:9000"));
        assert!(is_loopback_http("http://127.3.2.1:9000/"));
        assert!(is_loopback_http("http://localhost:9000"));
        assert!(is_loopback_http("http://[::1]:9000"));
        assert!(!is_loopback_http("http://10.0.0.1:9000"));
        assert!(!is_loopback_http("https://127.0.0.1:9000"));
        assert!(!is_loopback_http("http://s3.example.com"));
    }

    #[test]
    fn plain_http_elsewhere_needs_allow_http() {
        let config = S3Config {
            endpoint: "http://s3.example.com:9000".into(),
            ..S3Config::default()
        };
        let Err(err) = build_store(&config, "b") else {
            panic!("plain http to a remote host must be refused")
        };
        assert!(err.to_string().contains("allow_http"), "{err}");
        let config = S3Config {
            allow_http: true,
            ..config
        };
        assert!(build_store(&config, "b").is_ok());
    }

    #[test]
    fn config_serde() {
        let c: S3Config = serde_json::from_str(r#"{"endpoint":"http://127.0.0.1:1"}"#).unwrap();
        assert_eq!(c.endpoint, "http://127.0.0.1:1");
        assert_eq!(
            serde_json::from_str::<S3Config>("{}").unwrap(),
            S3Config::default()
        );
        assert!(serde_json::from_str::<S3Config>(r#"{"bucket":"x"}"#).is_err());
    }
}

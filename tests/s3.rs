//! A real S3-compatible server for the lake tests, and buckets to upload test files to.
//!
//! The server is the one `TOPSELLERS_TEST_S3` names (`scripts/test` starts moto and sets it);
//! without it, the first test that needs S3 starts one through `scripts/s3-server` (which
//! installs moto into `.tools/` if needed) and it stops when the test process ends. A test
//! that needs S3 never passes without one: it fails, saying how to get one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

/// The environment variable naming the test server's endpoint.
pub const ENDPOINT_ENV: &str = "TOPSELLERS_TEST_S3";

/// Credentials the test server accepts (any do).
const TEST_CREDENTIALS: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "topsellers-test"),
    ("AWS_SECRET_ACCESS_KEY", "topsellers-test-secret"),
    ("AWS_REGION", "us-east-1"),
];

/// The endpoint of the test server (`http://127.0.0.1:PORT`), started on first use if
/// `TOPSELLERS_TEST_S3` is not set. Also makes sure AWS credentials are in the environment
/// (test ones, unless set), so that no client looks for instance credentials.
pub fn endpoint() -> String {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            for (key, value) in TEST_CREDENTIALS {
                if std::env::var_os(key).is_none() {
                    // Set once, before any S3 client of this process exists.
                    std::env::set_var(key, value);
                }
            }
            match std::env::var(ENDPOINT_ENV) {
                Ok(url) if !url.is_empty() => url,
                _ => start_server(),
            }
        })
        .clone()
}

/// The credentials [`endpoint`] puts in the environment, for child processes.
pub fn credentials() -> Vec<(String, String)> {
    TEST_CREDENTIALS
        .iter()
        .map(|(key, value)| {
            (
                key.to_string(),
                std::env::var(key).unwrap_or_else(|_| value.to_string()),
            )
        })
        .collect()
}

fn start_server() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join("scripts/s3-server");
    let dir = std::env::temp_dir().join(format!("topsellers-s3-{}", std::process::id()));
    let output = std::process::Command::new(&script)
        .arg("start")
        .arg(&dir)
        .arg(std::process::id().to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "this test needs an S3-compatible server: set {ENDPOINT_ENV}=http://HOST:PORT \
                 or make {} runnable ({e})",
                script.display()
            )
        });
    assert!(
        output.status.success(),
        "this test needs an S3-compatible server, and `{} start` failed: set \
         {ENDPOINT_ENV}=http://HOST:PORT, or run ./scripts/test\n{}",
        script.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A fresh bucket on the test server.
pub struct TestBucket {
    /// Its name.
    pub name: String,
    store: Arc<AmazonS3>,
    runtime: tokio::runtime::Runtime,
}

impl TestBucket {
    /// Creates a bucket with a name unique to this process and call.
    pub fn create() -> TestBucket {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let endpoint = endpoint();
        let name = format!(
            "topsellers-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let addr = endpoint
            .strip_prefix("http://")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("{ENDPOINT_ENV}={endpoint}: expected http://IP:PORT"));
        let created = crate::http(addr, "PUT", &format!("/{name}"), &[]);
        assert_eq!(
            created.status,
            200,
            "create bucket {name}: {}",
            created.text()
        );
        let store = AmazonS3Builder::from_env()
            .with_endpoint(&endpoint)
            .with_allow_http(true)
            .with_bucket_name(&name)
            .build()
            .expect("S3 client");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        TestBucket {
            name,
            store: Arc::new(store),
            runtime,
        }
    }

    /// `s3://NAME/key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.name)
    }

    /// Uploads `bytes` as `key` (taken as the object's raw key: `%2F` stays `%2F`).
    pub fn put(&self, key: &str, bytes: Vec<u8>) {
        let path = ObjectPath::parse(key).expect("valid key");
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// Uploads every file under `dir` to `prefix/<path relative to dir>`; returns the keys.
    pub fn put_dir(&self, dir: &Path, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
        while let Some(at) = stack.pop() {
            for entry in std::fs::read_dir(&at).expect("read dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let relative = path.strip_prefix(dir).expect("inside").to_string_lossy();
                let key = format!("{prefix}/{}", relative.replace('\\', "/"));
                self.put(&key, std::fs::read(&path).expect("read file"));
                keys.push(key);
            }
        }
        keys.sort();
        keys
    }
}

//! A real Kafka-compatible broker (tansu) for the tests, on a free loopback port, plus topic
//! creation, producing and reading back with rdkafka.
//!
//! The binary comes from `TOPSELLERS_TANSU` (set by `scripts/kafka-broker run`), else from
//! `scripts/kafka-broker path`, which installs it into `.tools/` on first use. The broker with
//! storage that survives a restart comes from `TOPSELLERS_TANSU_PERSISTENT` or the cache that
//! `scripts/kafka-broker persistent-path` fills (`scripts/test` does that before the tests).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

/// The repository root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tansu binary with in-memory storage.
pub fn tansu_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TOPSELLERS_TANSU") {
        return path.into();
    }
    let out = Command::new(repo().join("scripts/kafka-broker"))
        .arg("path")
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/kafka-broker path");
    assert!(
        out.status.success(),
        "scripts/kafka-broker path failed: the Kafka tests need the tansu broker (python3 with venv and pip, and PyPI); run them with ./scripts/test"
    );
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8").trim())
}

/// The tansu build whose `sqlite://` storage survives a restart, if it is installed.
pub fn persistent_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TOPSELLERS_TANSU_PERSISTENT") {
        return Some(path.into());
    }
    let tools = std::env::var_os("TOPSELLERS_TOOLS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/topsellers-tools"))
        })?;
    let bin = tools.join("nisshi-0.7.0-pre.2/bin");
    std::fs::read_dir(bin)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file())
}

/// A broker process; killed when dropped.
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    bin: PathBuf,
    storage: String,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// A broker with in-memory storage.
    pub fn start() -> Broker {
        Broker::launch(tansu_binary(), |_| "memory://tansu/".to_owned())
    }

    /// A broker whose storage (sqlite in a temp dir) survives [`Broker::restart`].
    pub fn start_persistent(bin: PathBuf) -> Broker {
        // The path is relative to the broker's working directory (the temp dir).
        Broker::launch(bin, |_| "sqlite://tansu.db".to_owned())
    }

    /// A broker with in-memory storage on `port` (e.g. one a service already waits for).
    pub fn start_on(port: u16) -> Broker {
        Broker::launch_on(tansu_binary(), |_| "memory://tansu/".to_owned(), port)
    }

    fn launch(bin: PathBuf, storage: impl FnOnce(&Path) -> String) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Broker::launch_on(bin, storage, port)
    }

    fn launch_on(bin: PathBuf, storage: impl FnOnce(&Path) -> String, port: u16) -> Broker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut broker = Broker {
            addr: format!("127.0.0.1:{port}"),
            bin,
            storage: storage(dir.path()),
            dir,
            child: None,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://{}", self.addr);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new(&self.bin)
            .current_dir(self.dir.path())
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", &self.storage])
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        let started = Instant::now();
        while TcpStream::connect(&self.addr).is_err() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the broker exited ({status}): {}", self.log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the broker did not listen on {} within 30 s: {}",
                self.addr,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default()
    }

    /// Kills the broker (as a crash would).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and storage.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Client properties that make tansu fast enough for tests.
pub fn fast_properties() -> Vec<(&'static str, &'static str)> {
    vec![
        ("fetch.wait.max.ms", "10"),
        ("fetch.queue.backoff.ms", "10"),
    ]
}

/// Creates `topic` with `partitions` partitions.
pub fn create_topic(addr: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .expect("create_topics");
    for result in results {
        result.unwrap_or_else(|(name, e)| panic!("creating topic {name}: {e}"));
    }
}

/// Produces `messages` as (partition, payload) in order and waits until all are delivered.
pub fn produce(addr: &str, topic: &str, messages: &[(i32, Vec<u8>)]) {
    let producer: ThreadedProducer<rdkafka::producer::DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .set("message.timeout.ms", "120000")
        .create()
        .expect("producer");
    for (partition, payload) in messages {
        let mut record = BaseRecord::<(), [u8]>::to(topic)
            .partition(*partition)
            .payload(payload.as_slice());
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("all messages delivered");
}

/// Reads `topic` from the beginning until `expected` messages arrived (or 60 s passed):
/// (partition, key, payload) in arrival order.
pub fn read_topic(addr: &str, topic: &str, expected: usize) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "topsellers-test-reader")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    let mut list = TopicPartitionList::new();
    for p in 0..partitions {
        list.add_partition_offset(topic, p as i32, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&list).expect("assign");
    let mut out = Vec::new();
    let started = Instant::now();
    while out.len() < expected && started.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            out.push((
                message.partition(),
                message.key().unwrap_or_default().to_vec(),
                message.payload().unwrap_or_default().to_vec(),
            ));
        }
    }
    // Anything beyond `expected` that is already there.
    while let Some(Ok(message)) = consumer.poll(Duration::from_millis(1000)) {
        out.push((
            message.partition(),
            message.key().unwrap_or_default().to_vec(),
            message.payload().unwrap_or_default().to_vec(),
        ));
    }
    out
}

//! A real Kafka-compatible broker (tansu) for the tests, on a free loopback port, plus topic
//! creation, producing and reading back with rdkafka.
//!
//! The binary comes from `TOPSELLERS_TANSU` (set by `scripts/kafka-broker run`), else from
//! `scripts/kafka-broker path`, which installs it into `.tools/` on first use. Brokers keep
//! their data in memory, except those of [`Broker::start_persistent`]: the same binary with
//! `s3://` storage, in a fresh bucket on the test S3 server (see [`crate::s3`]), which
//! survives [`Broker::restart`].

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

/// In-memory storage: gone when the broker stops.
const MEMORY: &str = "memory://tansu/";

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// A broker process; killed when dropped.
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    bin: PathBuf,
    storage: String,
    /// Environment for the broker process (the S3 endpoint and credentials).
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Broker {
    /// A broker with in-memory storage.
    pub fn start() -> Broker {
        Broker::launch(MEMORY.to_owned(), Vec::new(), free_port())
    }

    /// A broker whose storage survives [`Broker::restart`]: a fresh bucket on the test S3
    /// server (started on first use unless `TOPSELLERS_TEST_S3` names one).
    pub fn start_persistent() -> Broker {
        let bucket = crate::s3::TestBucket::create();
        // tansu reads the endpoint and credentials from the AWS environment (object_store's
        // `AmazonS3Builder::from_env`): the broker gets these and no other `AWS_` variables.
        let endpoint = crate::s3::endpoint();
        let mut env = crate::s3::credentials();
        env.extend(
            [
                ("AWS_ENDPOINT", endpoint.as_str()),
                ("AWS_ENDPOINT_URL", endpoint.as_str()),
                ("AWS_ALLOW_HTTP", "true"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
        );
        Broker::launch(format!("s3://{}/", bucket.name), env, free_port())
    }

    /// A broker with in-memory storage on `port` (e.g. one a service already waits for).
    pub fn start_on(port: u16) -> Broker {
        Broker::launch(MEMORY.to_owned(), Vec::new(), port)
    }

    fn launch(storage: String, env: Vec<(String, String)>, port: u16) -> Broker {
        let mut broker = Broker {
            addr: format!("127.0.0.1:{port}"),
            bin: tansu_binary(),
            storage,
            env,
            dir: tempfile::tempdir().expect("temp dir"),
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
        let mut command = Command::new(&self.bin);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("AWS_") {
                command.env_remove(key);
            }
        }
        let child = command
            .current_dir(self.dir.path())
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .env_remove("CLUSTER_ID")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
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

/// A consumer of every partition of `topic` from its beginning (reporting each partition's
/// end when `eof`), and the partition count.
fn from_the_beginning(addr: &str, topic: &str, eof: bool) -> (BaseConsumer, i32) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("group.id", "topsellers-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", if eof { "true" } else { "false" })
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
        .map_or(0, |t| t.partitions().len()) as i32;
    if partitions > 0 {
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&list).expect("assign");
    }
    (consumer, partitions)
}

/// A message as the readers below return it: (partition, key, payload).
fn triple(message: &rdkafka::message::BorrowedMessage<'_>) -> (i32, Vec<u8>, Vec<u8>) {
    (
        message.partition(),
        message.key().unwrap_or_default().to_vec(),
        message.payload().unwrap_or_default().to_vec(),
    )
}

/// Reads `topic` from the beginning until `expected` messages arrived (or 60 s passed):
/// (partition, key, payload) in arrival order.
pub fn read_topic(addr: &str, topic: &str, expected: usize) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let (consumer, _) = from_the_beginning(addr, topic, false);
    let mut out = Vec::new();
    let started = Instant::now();
    while out.len() < expected && started.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            out.push(triple(&message));
        }
    }
    // Anything beyond `expected` that is already there.
    while let Some(Ok(message)) = consumer.poll(Duration::from_millis(1000)) {
        out.push(triple(&message));
    }
    out
}

/// Every message `topic` holds, read from its beginning up to each partition's end as the
/// broker reports it when the reader gets there (partition EOF; tansu's end offsets, as
/// `ListOffsets` reports them, can lag behind): (partition, key, payload), in offset order per
/// partition. Panics if that is not read within 60 s.
pub fn read_to_end(addr: &str, topic: &str) -> Vec<(i32, Vec<u8>, Vec<u8>)> {
    let (consumer, partitions) = from_the_beginning(addr, topic, true);
    let mut reading: std::collections::BTreeSet<i32> = (0..partitions).collect();
    let mut out = Vec::new();
    let started = Instant::now();
    while !reading.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{topic}: partitions {reading:?} not read to their end within 60 s ({} messages read)",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => out.push(triple(&message)),
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(p))) => {
                reading.remove(&p);
            }
            _ => {}
        }
    }
    out
}

//! Connects the processes of a cluster: bounded retries, a handshake that checks every process
//! runs the same layout, config and input, and errors that name the address.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};

use super::layout::Seat;
use super::peer::{PeerLoss, PeerStream};

/// Why the processes of a cluster could not connect; names the address or key concerned.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// This process's own `timely` address cannot be listened on.
    #[error("cannot listen on {key}: {source}")]
    Listen {
        /// The layout key and address, e.g. `process[0].timely (127.0.0.1:2101)`.
        key: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A lower-index process stayed unreachable.
    #[error("cannot reach process {process} at {address} ({key}) within {timeout:?}: {source}")]
    Unreachable {
        /// Its index.
        process: usize,
        /// Its address.
        address: String,
        /// Its layout key.
        key: String,
        /// How long it was tried.
        timeout: Duration,
        /// The last attempt's error.
        #[source]
        source: io::Error,
    },
    /// Higher-index processes did not connect in time.
    #[error("{missing} did not connect to {key} within {timeout:?}")]
    NotConnected {
        /// Which processes (index and address).
        missing: String,
        /// This process's layout key.
        key: String,
        /// How long they were waited for.
        timeout: Duration,
    },
    /// A peer answered, but the greeting failed.
    #[error("handshake with process {process} at {address}: {source}")]
    Handshake {
        /// The peer's index.
        process: usize,
        /// Its address.
        address: String,
        /// Why.
        #[source]
        source: HandshakeError,
    },
    /// A peer answered but cannot join this cluster: the processes' layouts, configs or inputs
    /// differ (the message says which and what to do).
    #[error("{0}")]
    Refused(String),
    /// Accepting connections failed.
    #[error("accepting peer connections: {0}")]
    Accept(#[source] io::Error),
    /// The accepting thread panicked (a bug).
    #[error("the connection thread panicked")]
    Panicked,
}

/// Why a greeting failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The socket failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The peer sent no greeting in time.
    #[error("no answer: {0}")]
    NoAnswer(#[source] io::Error),
    /// The peer's greeting is not ours.
    #[error("not a topsellers process (wrong greeting)")]
    NotTopsellers,
}

type Result<T, E = ConnectError> = std::result::Result<T, E>;

/// What a process tells its peers about itself; every field but `process` must agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's index.
    pub process: u64,
    /// Processes in the sender's layout.
    pub processes: u64,
    /// Threads per process in the sender's layout.
    pub threads: u64,
    /// A hash of the sender's scoring and sources config.
    pub config: u64,
    /// Read units in the sender's backfill input that the cluster's workers share (the
    /// history; a restored checkpoint's own segments are read by their process alone).
    pub units: u64,
    /// The backfill's cut-off time as the sender sees it (`i64::MIN`: none).
    pub until_ms: i64,
    /// 1 when the sender starts from a checkpoint of its state (its cut-off is that
    /// checkpoint's time, which differs from process to process: the cluster's backfill
    /// completes at the latest of them), else 0.
    pub restored: u64,
}

const MAGIC: &[u8; 8] = b"TOPSCL02";
const HELLO_BYTES: usize = 8 + 7 * 8;

impl Hello {
    fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut bytes = [0u8; HELLO_BYTES];
        bytes[..8].copy_from_slice(MAGIC);
        let fields = [
            self.process,
            self.processes,
            self.threads,
            self.config,
            self.units,
            self.until_ms as u64,
            self.restored,
        ];
        for (i, field) in fields.iter().enumerate() {
            bytes[8 + i * 8..16 + i * 8].copy_from_slice(&field.to_be_bytes());
        }
        bytes
    }

    fn decode(bytes: &[u8; HELLO_BYTES]) -> Option<Hello> {
        if &bytes[..8] != MAGIC {
            return None;
        }
        let field = |i: usize| u64::from_be_bytes(bytes[8 + i * 8..16 + i * 8].try_into().unwrap());
        Some(Hello {
            process: field(0),
            processes: field(1),
            threads: field(2),
            config: field(3),
            units: field(4),
            until_ms: field(5) as i64,
            restored: field(6),
        })
    }

    /// The cut-off the cluster's backfill completes at, given every peer's greeting: the
    /// common one, or with a restored checkpoint on any process the latest of them.
    fn agreed_until(&self, peers: &[Hello]) -> i64 {
        peers
            .iter()
            .map(|peer| peer.until_ms)
            .fold(self.until_ms, i64::max)
    }

    /// Why `peer` cannot join this process's cluster, if it cannot.
    fn mismatch(&self, peer: &Hello, origin: &str) -> Option<String> {
        if (peer.processes, peer.threads) != (self.processes, self.threads) {
            return Some(format!(
                "{origin} runs a layout of {} processes × {} threads, this one {} × {}: start \
                 every process with the same workers.toml",
                peer.processes, peer.threads, self.processes, self.threads
            ));
        }
        if peer.config != self.config {
            return Some(format!(
                "{origin} runs a different scoring or sources config: start every process \
                 with the same config file and flags"
            ));
        }
        let restoring = self.restored != 0 || peer.restored != 0;
        if peer.units != self.units || !restoring && peer.until_ms != self.until_ms {
            return Some(format!(
                "{origin} sees other input ({} read units up to {}), this one {} up to {}: \
                 every process must see the same files",
                peer.units, peer.until_ms, self.units, self.until_ms
            ));
        }
        None
    }
}

/// Connects to every other process of `seat`'s layout, in the order timely expects (`None` at
/// this process's own index), and returns the cut-off the cluster's backfill completes at (see
/// [`Hello::restored`]). Gives up after the layout's `connect_timeout` with an error that
/// names the address that could not be reached.
pub fn connect(seat: &Seat, me: Hello, loss: PeerLoss) -> Result<(Vec<Option<PeerStream>>, i64)> {
    let deadline = Instant::now() + seat.layout.connect_timeout();
    let addresses: Vec<&str> = seat
        .layout
        .process
        .iter()
        .map(|p| p.timely.as_str())
        .collect();
    let listener =
        TcpListener::bind(addresses[seat.process]).map_err(|source| ConnectError::Listen {
            key: seat.timely_key(seat.process),
            source,
        })?;
    // Higher-index processes connect to this one; this one connects to the lower ones.
    let accepted = std::thread::scope(|scope| {
        let accepting = scope.spawn(|| accept(&listener, seat, me, deadline));
        let mut streams = Vec::new();
        for (process, address) in addresses.iter().enumerate().take(seat.process) {
            streams.push(dial(address, process, seat, me, deadline)?);
        }
        let later = accepting.join().map_err(|_| ConnectError::Panicked)??;
        Ok((streams, later))
    })?;
    let (earlier, later) = accepted;
    let peers: Vec<Hello> = earlier
        .iter()
        .chain(&later)
        .map(|(_, hello)| *hello)
        .collect();
    let until_ms = me.agreed_until(&peers);
    let mut sockets = Vec::with_capacity(addresses.len());
    for (process, (stream, _)) in earlier.into_iter().enumerate() {
        sockets.push(Some(PeerStream::new(
            stream,
            process,
            addresses[process],
            loss.clone(),
        )));
    }
    sockets.push(None);
    for (offset, (stream, _)) in later.into_iter().enumerate() {
        let process = seat.process + 1 + offset;
        sockets.push(Some(PeerStream::new(
            stream,
            process,
            addresses[process],
            loss.clone(),
        )));
    }
    Ok((sockets, until_ms))
}

/// Connects to a lower-index process, retrying until `deadline`; the stream and its greeting.
fn dial(
    address: &str,
    process: usize,
    seat: &Seat,
    me: Hello,
    deadline: Instant,
) -> Result<(TcpStream, Hello)> {
    // 50 ms doubling to 1 s, with jitter: processes started together do not dial in step.
    let mut waits = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(1))
        .with_jitter()
        .without_max_times()
        .build();
    let mut next_log = Instant::now() + Duration::from_secs(5);
    loop {
        let attempt = (|| -> io::Result<TcpStream> {
            let target = address.to_socket_addrs()?.next().ok_or_else(|| {
                io::Error::new(io::ErrorKind::NotFound, "the name resolves to no address")
            })?;
            let left = deadline.saturating_duration_since(Instant::now());
            TcpStream::connect_timeout(&target, left.max(Duration::from_millis(10)))
        })();
        match attempt {
            Ok(mut stream) => {
                let peer = handshake(&mut stream, me, deadline).map_err(|source| {
                    ConnectError::Handshake {
                        process,
                        address: address.into(),
                        source,
                    }
                })?;
                if peer.process != process as u64 {
                    return Err(ConnectError::Refused(format!(
                        "{address} ({}) answered as process {}, not {process}: the processes' \
                         workers.toml files differ",
                        seat.timely_key(process),
                        peer.process
                    )));
                }
                if let Some(why) = me.mismatch(&peer, &format!("process {process} ({address})")) {
                    return Err(ConnectError::Refused(why));
                }
                return Ok((stream, peer));
            }
            Err(source) if Instant::now() >= deadline => {
                return Err(ConnectError::Unreachable {
                    process,
                    address: address.into(),
                    key: seat.timely_key(process),
                    timeout: seat.layout.connect_timeout(),
                    source,
                })
            }
            Err(e) => {
                if Instant::now() >= next_log {
                    tracing::info!("waiting for process {process} at {address}: {e}");
                    next_log = Instant::now() + Duration::from_secs(5);
                }
                let wait = waits.next().unwrap_or(Duration::from_secs(1));
                std::thread::sleep(wait.min(deadline.saturating_duration_since(Instant::now())));
            }
        }
    }
}

/// Accepts every higher-index process, until `deadline`; their streams and greetings.
fn accept(
    listener: &TcpListener,
    seat: &Seat,
    me: Hello,
    deadline: Instant,
) -> Result<Vec<(TcpStream, Hello)>> {
    let count = seat.layout.process.len();
    let mut later: Vec<Option<(TcpStream, Hello)>> =
        (seat.process + 1..count).map(|_| None).collect();
    listener
        .set_nonblocking(true)
        .map_err(ConnectError::Accept)?;
    while later.iter().any(Option::is_none) {
        match listener.accept() {
            Ok((mut stream, from)) => {
                stream
                    .set_nonblocking(false)
                    .map_err(ConnectError::Accept)?;
                let peer = match handshake(&mut stream, me, deadline) {
                    Ok(peer) => peer,
                    Err(e) => {
                        // Not a peer (a port scan, a health check): keep waiting for the real one.
                        tracing::warn!("ignoring a connection from {from}: {e}");
                        continue;
                    }
                };
                let index = peer.process as usize;
                let slot = index
                    .checked_sub(seat.process + 1)
                    .and_then(|slot| later.get_mut(slot));
                let Some(slot) = slot else {
                    return Err(ConnectError::Refused(format!(
                        "process {index} ({from}) connected, but only processes after {} connect \
                         here: the processes' workers.toml files differ",
                        seat.process
                    )));
                };
                if let Some(why) = me.mismatch(&peer, &format!("process {index} ({from})")) {
                    return Err(ConnectError::Refused(why));
                }
                *slot = Some((stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    let missing: Vec<String> = later
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| s.is_none())
                        .map(|(slot, _)| {
                            let process = seat.process + 1 + slot;
                            format!(
                                "process {process} ({})",
                                seat.layout.process[process].timely
                            )
                        })
                        .collect();
                    return Err(ConnectError::NotConnected {
                        missing: missing.join(", "),
                        key: seat.timely_key(seat.process),
                        timeout: seat.layout.connect_timeout(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(ConnectError::Accept(e)),
        }
    }
    Ok(later.into_iter().flatten().collect())
}

/// Sends this process's [`Hello`] and reads the peer's.
fn handshake(
    stream: &mut TcpStream,
    me: Hello,
    deadline: Instant,
) -> Result<Hello, HandshakeError> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(5));
    stream.set_read_timeout(Some(left))?;
    stream.set_nodelay(true)?;
    stream.write_all(&me.encode())?;
    let mut bytes = [0u8; HELLO_BYTES];
    stream
        .read_exact(&mut bytes)
        .map_err(HandshakeError::NoAnswer)?;
    stream.set_read_timeout(None)?;
    // A host that vanishes without closing its connections is noticed within seconds.
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(2))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    socket2::SockRef::from(&*stream).set_tcp_keepalive(&keepalive)?;
    Hello::decode(&bytes).ok_or(HandshakeError::NotTopsellers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::layout::{Layout, ProcessAddr};

    /// `n` distinct loopback addresses that were free a moment ago (all bound at once: one at a
    /// time, the system may hand out a just-released port again).
    fn free_addresses(n: usize) -> Vec<String> {
        let listeners: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect()
    }

    fn seat(processes: usize, process: usize, addresses: &[String], timeout: &str) -> Seat {
        Seat {
            layout: Layout {
                threads: 1,
                processes: None,
                connect_timeout: topsellers_model::parse_duration(timeout).unwrap(),
                process: addresses[..processes]
                    .iter()
                    .map(|a| ProcessAddr {
                        timely: a.clone(),
                        http: "127.0.0.1:0".into(),
                    })
                    .collect(),
            },
            process,
            file: "workers.toml".into(),
        }
    }

    fn hello(process: u64, config: u64) -> Hello {
        Hello {
            process,
            processes: 3,
            threads: 1,
            config,
            units: 4,
            until_ms: 1000,
            restored: 0,
        }
    }

    fn quiet() -> PeerLoss {
        PeerLoss::new(|_| {})
    }

    #[test]
    fn hello_round_trips() {
        let me = Hello {
            until_ms: i64::MIN,
            ..hello(2, 99)
        };
        assert_eq!(Hello::decode(&me.encode()), Some(me));
        let mut bytes = me.encode();
        bytes[0] = b'X';
        assert_eq!(Hello::decode(&bytes), None);
    }

    #[test]
    fn three_processes_connect_in_timely_order() {
        let addresses = free_addresses(3);
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|p| {
                    let seat = seat(3, p, &addresses, "20s");
                    scope.spawn(move || connect(&seat, hello(p as u64, 7), quiet()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (p, result) in results.into_iter().enumerate() {
            let (sockets, until_ms) = result.unwrap();
            assert_eq!(until_ms, 1000);
            assert_eq!(sockets.len(), 3);
            for (q, socket) in sockets.iter().enumerate() {
                assert_eq!(socket.is_none(), p == q, "process {p}, slot {q}");
            }
        }
    }

    /// Processes restored from their own checkpoints have cut-offs of their own: they agree
    /// on the latest (a process without a checkpoint joins them); fresh ones must agree.
    #[test]
    fn restored_processes_agree_on_the_latest_cut_off() {
        let addresses = free_addresses(3);
        let hellos = [(1000, 0), (1200, 1), (1100, 1)];
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = hellos
                .iter()
                .enumerate()
                .map(|(p, &(until_ms, restored))| {
                    let seat = seat(3, p, &addresses, "20s");
                    let me = Hello {
                        until_ms,
                        restored,
                        ..hello(p as u64, 7)
                    };
                    scope.spawn(move || connect(&seat, me, quiet()))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for result in results {
            assert_eq!(result.unwrap().1, 1200);
        }
        let me = Hello {
            until_ms: 1000,
            ..hello(0, 7)
        };
        let other = |until_ms, restored, units| Hello {
            until_ms,
            restored,
            units,
            ..hello(1, 7)
        };
        assert!(
            me.mismatch(&other(1200, 0, 4), "p").is_some(),
            "fresh: same cut-off"
        );
        assert!(me.mismatch(&other(1200, 1, 4), "p").is_none());
        let shared = me.mismatch(&other(1000, 1, 5), "p").unwrap();
        assert!(shared.contains("other input"), "{shared}");
    }

    #[test]
    fn a_different_config_is_refused_by_name() {
        let addresses = free_addresses(2);
        let (first, second) = std::thread::scope(|scope| {
            let a = scope.spawn(|| connect(&seat(2, 0, &addresses, "20s"), hello(0, 1), quiet()));
            let b = scope.spawn(|| connect(&seat(2, 1, &addresses, "20s"), hello(1, 2), quiet()));
            (a.join().unwrap(), b.join().unwrap())
        });
        for result in [first, second] {
            let message = format!("{:#}", result.err().expect("refused"));
            assert!(
                message.contains("different scoring or sources config"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_unreachable_peer_is_named_after_the_timeout() {
        let addresses = free_addresses(2);
        // Process 1 dials process 0, which never starts.
        let message = format!(
            "{:#}",
            connect(&seat(2, 1, &addresses, "1s"), hello(1, 0), quiet())
                .err()
                .expect("times out")
        );
        assert!(
            message.contains(&addresses[0]) && message.contains("process[0].timely"),
            "{message}"
        );
        // Process 0 waits for process 1, which never starts.
        let message = format!(
            "{:#}",
            connect(&seat(2, 0, &addresses, "1s"), hello(0, 0), quiet())
                .err()
                .expect("times out")
        );
        assert!(
            message.contains(&addresses[1]) && message.contains("did not connect"),
            "{message}"
        );
    }
}

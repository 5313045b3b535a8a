//! A connection to a peer process that reports, once and by name, when the peer is lost.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once, OnceLock};

use timely::communication::allocator::zero_copy::stream::Stream;

/// Set once any peer connection broke: timely's network and worker threads then panic by
/// design ("timely communication error"); the reason is already reported, so their panic
/// messages are kept off the terminal.
static PEER_LOST: AtomicBool = AtomicBool::new(false);

/// What to do when a peer is lost: called at most once per process, with a message naming the
/// peer.
#[derive(Clone)]
pub struct PeerLoss {
    message: Arc<OnceLock<String>>,
    report: Arc<dyn Fn(String) + Send + Sync>,
}

impl PeerLoss {
    /// Calls `report` on the first loss.
    pub fn new(report: impl Fn(String) + Send + Sync + 'static) -> Self {
        quiet_timely_panics();
        PeerLoss {
            message: Arc::new(OnceLock::new()),
            report: Arc::new(report),
        }
    }

    /// Whether a peer of this process was lost.
    pub fn happened() -> bool {
        PEER_LOST.load(Ordering::SeqCst)
    }

    /// The report of the first loss, if any.
    pub fn message(&self) -> Option<&str> {
        self.message.get().map(String::as_str)
    }

    fn lost(&self, process: usize, address: &str, cause: &str) {
        PEER_LOST.store(true, Ordering::SeqCst);
        let message = format!(
            "lost process {process} ({address}): {cause}. A cluster cannot continue without a \
             process: restart every process (state comes back by replaying the sources)"
        );
        if self.message.set(message.clone()).is_ok() {
            (self.report)(message);
        }
    }
}

/// Hides the panic messages of timely's threads after a peer was lost (see [`PEER_LOST`]).
fn quiet_timely_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let timely_thread = std::thread::current()
                .name()
                .is_some_and(|name| name.starts_with("timely:"));
            if !(timely_thread && PEER_LOST.load(Ordering::SeqCst)) {
                default(info);
            }
        }));
    });
}

/// A TCP connection to process `process`; an end of stream or an error reports the loss.
pub struct PeerStream {
    stream: TcpStream,
    process: usize,
    address: Arc<str>,
    loss: PeerLoss,
}

impl PeerStream {
    /// Wraps a connected, handshaken stream.
    pub fn new(stream: TcpStream, process: usize, address: &str, loss: PeerLoss) -> Self {
        PeerStream {
            stream,
            process,
            address: address.into(),
            loss,
        }
    }

    fn check<T>(&self, result: io::Result<T>, ended: impl FnOnce(&T) -> bool) -> io::Result<T> {
        match &result {
            Ok(value) if ended(value) => {
                self.loss
                    .lost(self.process, &self.address, "the connection was closed")
            }
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                self.loss.lost(self.process, &self.address, &e.to_string())
            }
            _ => {}
        }
        result
    }
}

impl Read for PeerStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let result = self.stream.read(buf);
        // A peer that stops cleanly also ends its stream; by then this process is stopping
        // too, or it must (the report says so either way).
        self.check(result, |&n| n == 0 && !buf.is_empty())
    }
}

impl Write for PeerStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let result = self.stream.write(buf);
        self.check(result, |_| false)
    }

    fn flush(&mut self) -> io::Result<()> {
        let result = self.stream.flush();
        self.check(result, |_| false)
    }
}

impl Stream for PeerStream {
    fn try_clone(&self) -> io::Result<Self> {
        Ok(PeerStream {
            stream: self.stream.try_clone()?,
            process: self.process,
            address: self.address.clone(),
            loss: self.loss.clone(),
        })
    }

    fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        self.stream.set_nonblocking(nonblocking)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::Mutex;

    fn loss_message(peer: &PeerStream) -> Option<String> {
        peer.loss.message().map(str::to_owned)
    }

    #[test]
    fn a_closed_peer_is_reported_once_by_name() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let client = TcpStream::connect(&address).unwrap();
        let (server, _) = listener.accept().unwrap();
        let reports = Arc::new(Mutex::new(Vec::new()));
        let loss = {
            let reports = reports.clone();
            PeerLoss::new(move |message| reports.lock().unwrap().push(message))
        };
        let mut peer = PeerStream::new(server, 3, &address, loss);
        let mut other = peer.try_clone().unwrap();
        drop(client);
        let mut buf = [0u8; 8];
        assert_eq!(peer.read(&mut buf).unwrap(), 0);
        assert_eq!(other.read(&mut buf).unwrap(), 0);
        let reports = reports.lock().unwrap();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(
            reports[0].contains("lost process 3") && reports[0].contains(&address),
            "{}",
            reports[0]
        );
        assert!(PeerLoss::happened());
        assert_eq!(loss_message(&peer), Some(reports[0].clone()));
    }
}

//! One load client for every server the serving benchmark compares (`scripts/bench-serving.sh`):
//! topsellers and nginx over HTTP/1.1 keep-alive, Redis over RESP — the same connections, the
//! same random choice of documents, the same clock, so only the server differs.
//!
//! Each connection sends one request, reads the whole answer, then sends the next. Without
//! `--rate` it goes as fast as the server answers (saturation, like `wrk`); with `--rate R` the
//! connections together send R requests per second on a fixed schedule and each latency is
//! measured from the request's *scheduled* time, so a stalled server shows in the percentiles
//! instead of pausing the client (no coordinated omission, as `wrk2` does) — except that a send
//! less than 1 ms late (the timer's granularity, not the server's doing) counts from when it
//! went out.
//!
//! ```text
//! serve_load http  127.0.0.1:8091 paths.txt [--connections 64] [--seconds 20] [--rate R] [--threads 2]
//! serve_load redis 127.0.0.1:6399 keys.txt  [same options]
//! ```
//!
//! `paths.txt` holds one URL path per line (`/v1/top/…`), `keys.txt` one Redis key per line.
//! Prints `load_result requests=… seconds=… errors=… p50_us=… p99_us=… p999_us=… max_us=…
//! bytes=… rate=…` (bytes: mean body size; rate: the target, 0 for saturation).

use std::io;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How late tokio's timer may wake a connection (its wheel ticks every millisecond).
const TIMER_SLACK: Duration = Duration::from_millis(1);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Redis,
}

struct Options {
    protocol: Protocol,
    addr: String,
    requests: Vec<Vec<u8>>,
    connections: usize,
    seconds: f64,
    rate: f64,
    threads: usize,
}

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    errors: u64,
    body_bytes: u64,
}

fn main() -> Result<()> {
    let options = parse_args(std::env::args().skip(1).collect())?;
    let start = Instant::now() + Duration::from_millis(50);
    let end = start + Duration::from_secs_f64(options.seconds);
    let options = std::sync::Arc::new(options);
    let mut threads = Vec::new();
    for thread in 0..options.threads {
        let options = options.clone();
        threads.push(std::thread::spawn(move || -> Result<Vec<Tally>> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut tasks = Vec::new();
                for conn in (thread..options.connections).step_by(options.threads) {
                    let options = options.clone();
                    tasks.push(tokio::spawn(async move {
                        connection(&options, conn, start, end).await
                    }));
                }
                let mut tallies = Vec::new();
                for task in tasks {
                    tallies.push(task.await?);
                }
                Ok(tallies)
            })
        }));
    }
    let mut all = Tally::default();
    for thread in threads {
        let tallies = thread
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
        for tally in tallies {
            all.latencies_us.extend(tally.latencies_us);
            all.errors += tally.errors;
            all.body_bytes += tally.body_bytes;
        }
    }
    let seconds = end.duration_since(start).as_secs_f64();
    let mut latencies = all.latencies_us;
    latencies.sort_unstable();
    let pct = |p: f64| -> u32 {
        if latencies.is_empty() {
            return 0;
        }
        let at = ((p / 100.0) * latencies.len() as f64).ceil() as usize;
        latencies[at.clamp(1, latencies.len()) - 1]
    };
    let requests = latencies.len() as u64;
    println!(
        "load_result requests={requests} seconds={seconds:.3} errors={} p50_us={} p99_us={} \
         p999_us={} max_us={} bytes={} rate={}",
        all.errors,
        pct(50.0),
        pct(99.0),
        pct(99.9),
        latencies.last().copied().unwrap_or(0),
        all.body_bytes.checked_div(requests).unwrap_or(0),
        options.rate
    );
    Ok(())
}

/// Runs one connection until `end`, reconnecting after an error.
async fn connection(options: &Options, index: usize, start: Instant, end: Instant) -> Tally {
    let mut tally = Tally::default();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ ((index as u64 + 1) << 17);
    // With a rate, connection `index` sends at start + offset + n × interval.
    let interval = (options.rate > 0.0)
        .then(|| Duration::from_secs_f64(options.connections as f64 / options.rate));
    let offset = interval.map_or(Duration::ZERO, |every| {
        every.mul_f64(index as f64 / options.connections as f64)
    });
    let mut sent = 0u32;
    let mut buf = Vec::with_capacity(64 * 1024);
    tokio::time::sleep_until(start.into()).await;
    'connect: while Instant::now() < end {
        let Ok(mut stream) = TcpStream::connect(&options.addr).await else {
            tally.errors += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        buf.clear();
        loop {
            let scheduled = match interval {
                Some(every) => {
                    let at = start + offset + every * sent;
                    tokio::time::sleep_until(at.into()).await;
                    // The timer wakes up to a millisecond late (its granularity): such a send
                    // counts from when it went out, a later one from its schedule.
                    let now = Instant::now();
                    if now.duration_since(at) < TIMER_SLACK {
                        now
                    } else {
                        at
                    }
                }
                None => Instant::now(),
            };
            if scheduled >= end {
                break 'connect;
            }
            sent += 1;
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let request = &options.requests[(rng % options.requests.len() as u64) as usize];
            let answer = async {
                stream.write_all(request).await?;
                match options.protocol {
                    Protocol::Http => read_http(&mut stream, &mut buf).await,
                    Protocol::Redis => read_redis(&mut stream, &mut buf).await,
                }
            };
            match answer.await {
                Ok(body) => {
                    let took = Instant::now().duration_since(scheduled);
                    tally
                        .latencies_us
                        .push(took.as_micros().min(u32::MAX as u128) as u32);
                    tally.body_bytes += body as u64;
                }
                Err(_) => {
                    tally.errors += 1;
                    continue 'connect;
                }
            }
        }
    }
    tally
}

/// Reads one HTTP/1.1 answer (status 200, `Content-Length` body) and returns the body's length;
/// bytes of a next answer stay in `buf`.
async fn read_http(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(invalid)?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(invalid(head.lines().next().unwrap_or("").to_string()));
    }
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| invalid("no content-length"))?;
    while buf.len() < head_end + length {
        fill(stream, buf).await?;
    }
    buf.drain(..head_end + length);
    Ok(length)
}

/// Reads one RESP bulk string (`$len\r\n…\r\n`) and returns its length; a missing key is an error.
async fn read_redis(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<usize> {
    let line_end = loop {
        if let Some(at) = buf.windows(2).position(|w| w == b"\r\n") {
            break at + 2;
        }
        fill(stream, buf).await?;
    };
    let line = std::str::from_utf8(&buf[..line_end - 2]).map_err(invalid)?;
    let length: usize = line
        .strip_prefix('$')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| invalid(format!("not a bulk string: {line}")))?;
    while buf.len() < line_end + length + 2 {
        fill(stream, buf).await?;
    }
    buf.drain(..line_end + length + 2);
    Ok(length)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<()> {
    let len = buf.len();
    buf.resize(len + 64 * 1024, 0);
    let n = stream.read(&mut buf[len..]).await?;
    buf.truncate(len + n);
    if n == 0 {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

fn invalid(error: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, error.to_string())
}

fn parse_args(args: Vec<String>) -> Result<Options> {
    let usage = "usage: serve_load http|redis ADDR LIST_FILE [--connections N] [--seconds S] \
                 [--rate R] [--threads T]";
    let [protocol, addr, list, rest @ ..] = args.as_slice() else {
        bail!("{usage}");
    };
    let protocol = match protocol.as_str() {
        "http" => Protocol::Http,
        "redis" => Protocol::Redis,
        other => bail!("unknown protocol {other:?}; {usage}"),
    };
    let text = std::fs::read_to_string(list).with_context(|| format!("reading {list}"))?;
    let requests: Vec<Vec<u8>> = text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| match protocol {
            Protocol::Http => format!("GET {line} HTTP/1.1\r\nHost: {addr}\r\n\r\n").into_bytes(),
            Protocol::Redis => {
                format!("*2\r\n$3\r\nGET\r\n${}\r\n{line}\r\n", line.len()).into_bytes()
            }
        })
        .collect();
    if requests.is_empty() {
        bail!("{list} lists nothing to request");
    }
    let mut options = Options {
        protocol,
        addr: addr.clone(),
        requests,
        connections: 64,
        seconds: 20.0,
        rate: 0.0,
        threads: 2,
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--connections" => options.connections = value.parse()?,
            "--seconds" => options.seconds = value.parse()?,
            "--rate" => options.rate = value.parse()?,
            "--threads" => options.threads = value.parse()?,
            other => bail!("unknown option {other}; {usage}"),
        }
    }
    if options.connections == 0 || options.threads == 0 || options.seconds <= 0.0 {
        bail!("connections, threads and seconds must be positive");
    }
    options.threads = options.threads.min(options.connections);
    Ok(options)
}

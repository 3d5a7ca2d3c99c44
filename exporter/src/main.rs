/*!
`mosaic-hb exporter`: the fleet's metrics over HTTP, read fresh at every scrape.

```text
mosaic-hb exporter [--listen ADDR] [--fleet NAME]... [--stale-after N] [DIR...]
```

`GET /metrics` reads every heartbeat directory at that moment (the same scan and
classification as `mosaic-hb status`, so a killed sidecar is `stale` at the next scrape) and
answers with the families of [`mosaic_core::status::metrics`]; `GET /` answers one line; anything
else is 404 (405 for a method other than GET or HEAD). Nothing else is served.

# A small server that garbage cannot stall

hyper parses HTTP (no parser of ours) on a one-thread tokio runtime: one thread, whatever the
number of clients. The limits, all constants below:

- at most [`MAX_CONNECTIONS`] open at once; a connection beyond that is closed at once, so
  10,000 idle clients cost the exporter nothing but accepting and closing;
- one request per connection (no keep-alive), and each connection has [`CONNECTION_TIME`] in
  all, to send its request and to read the answer: a slow client is cut off, and frees its
  place;
- a request head over [`MAX_HEAD`] bytes is refused (431) without being kept; a body is never
  read;
- at most [`MAX_ANSWERS`] metric answers held in memory at once (a client that reads slowly
  holds its answer until its time is up); beyond that, 503.

So memory is bounded by about `MAX_CONNECTIONS` small buffers plus `MAX_ANSWERS` answers, and
the time one client can hold a place is bounded by `CONNECTION_TIME`.

SIGTERM or SIGINT stops it: it stops listening at once, lets answers in flight finish for up
to [`GRACE`], and exits 0.
*/

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use clap::Parser;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use mosaic_core::exit::Exit;
use mosaic_core::status::{self, metrics};
use mosaic_core::{dirs, why};
use tokio::net::{TcpListener, TcpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Loopback only: the metrics name every agent, and a port on every interface would show them
/// to the network. Pass `--listen 0.0.0.0:PORT` to be scraped from elsewhere.
const DEFAULT_LISTEN: &str = "127.0.0.1:9479";
/// Connections open at once; more are closed as soon as they are accepted.
const MAX_CONNECTIONS: usize = 256;
/// All the time one connection gets: to send its request and to read the answer.
const CONNECTION_TIME: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's smallest buffer limit).
const MAX_HEAD: usize = 8 * 1024;
/// Metric answers held in memory at once.
const MAX_ANSWERS: usize = 16;
/// Connections the kernel queues for us to accept.
const BACKLOG: u32 = 4096;
/// How long answers in flight may finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(1);

const HELP: &str = "\
Limits: 256 connections at once (more are closed at once), one request per connection,
5 s per connection in all, request heads up to 8 KiB, 16 metric answers in memory at once.

Environment:
  MOSAIC_HEARTBEAT_RUN_DIR  the heartbeat directory when no DIR is given (empty = unset)
  XDG_RUNTIME_DIR           else $XDG_RUNTIME_DIR/mosaic/heartbeat, and without it
                            /tmp/mosaic-<uid>/heartbeat (the launcher's rule)

Exit codes:
  0  stopped by SIGTERM or SIGINT
  1  failed at run time: cannot listen on ADDR (in use, not permitted)
  2  bad input: a bad argument, or more --fleet names than directories";

#[derive(Parser)]
#[command(
    name = "mosaic-hb exporter",
    bin_name = "mosaic-hb exporter",
    version,
    about = "Serve the fleet's heartbeat metrics to Prometheus, read fresh at every scrape.",
    after_help = HELP
)]
struct Cli {
    /// Address to listen on, IP:PORT (port 0: any free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// The `fleet` label for the DIR in the same position [default: the directory itself].
    #[arg(long, value_name = "NAME")]
    fleet: Vec<String>,
    /// An agent whose last `status=ok` beat is more than N of its intervals old is stale.
    #[arg(long, value_name = "N", default_value_t = status::classify::STALE_AFTER, value_parser = status::stale_after)]
    stale_after: f64,
    /// Heartbeat directories [default: $MOSAIC_HEARTBEAT_RUN_DIR, else
    /// $XDG_RUNTIME_DIR/mosaic/heartbeat, else /tmp/mosaic-<uid>/heartbeat]. A directory that
    /// is missing or unreadable at a scrape reads as `mosaic_fleet_up 0`.
    dirs: Vec<PathBuf>,
}

/// What every scrape reads.
struct Fleets {
    /// Each directory with its `fleet` label.
    dirs: Vec<(String, PathBuf)>,
    stale_after: f64,
}

impl Fleets {
    fn scrape(&self) -> String {
        let reports: Vec<Option<Vec<status::Row>>> = self
            .dirs
            .iter()
            .map(|(_, dir)| status::report(dir, self.stale_after).ok())
            .collect();
        let fleets: Vec<metrics::Fleet> = self
            .dirs
            .iter()
            .zip(&reports)
            .map(|((label, _), rows)| metrics::Fleet {
                label,
                rows: rows.as_deref(),
            })
            .collect();
        metrics::prometheus(&fleets)
    }
}

fn main() -> ExitCode {
    let cli: Cli = mosaic_core::exit::parse_args("mosaic-hb");
    let dirs = if cli.dirs.is_empty() {
        vec![dirs::dir_from_env()]
    } else {
        cli.dirs
    };
    if cli.fleet.len() > dirs.len() {
        eprintln!(
            "mosaic-hb: exporter: {} --fleet names for {} directories: give one per DIR, in order",
            cli.fleet.len(),
            dirs.len()
        );
        return Exit::Usage.into();
    }
    let fleets = Fleets {
        dirs: dirs
            .into_iter()
            .enumerate()
            .map(|(i, dir)| {
                let label = match cli.fleet.get(i) {
                    Some(name) => name.clone(),
                    None => dir.to_string_lossy().into_owned(),
                };
                (label, dir)
            })
            .collect(),
        stale_after: cli.stale_after,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("mosaic-hb: exporter: cannot start: {}", why(&e));
            return Exit::Failed.into();
        }
    };
    match runtime.block_on(serve(cli.listen, Arc::new(fleets))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("mosaic-hb: exporter: {message}");
            Exit::Failed.into()
        }
    }
}

async fn serve(addr: SocketAddr, fleets: Arc<Fleets>) -> Result<(), String> {
    let signal_failed = |e: std::io::Error| format!("cannot handle signals: {}", why(&e));
    let mut term = signal(SignalKind::terminate()).map_err(signal_failed)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_failed)?;
    let listener = listen(addr).map_err(|e| format!("cannot listen on {addr}: {}", why(&e)))?;
    let bound = listener.local_addr().unwrap_or(addr);
    eprintln!("mosaic-hb exporter: listening on http://{bound}/metrics");
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let answers = Arc::new(Semaphore::new(MAX_ANSWERS));
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of descriptors, or a connection reset before we took it: the next
                    // accept may work; do not spin meanwhile.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
        };
        // Over the limit: closed at once, costing nothing that lasts.
        let Ok(place) = places.clone().try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let fleets = fleets.clone();
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let response = answer(&request, &fleets, &answers);
                async move { Ok::<_, Infallible>(response) }
            });
            let connection = http1::Builder::new()
                .keep_alive(false)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            // A client that is slow to ask or to read loses its connection, and its place.
            let _ = tokio::time::timeout(CONNECTION_TIME, connection).await;
            drop(place);
        });
    }
    drop(listener);
    let all = u32::try_from(MAX_CONNECTIONS).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(GRACE, places.acquire_many(all)).await;
    Ok(())
}

/// A listening socket with a deep accept queue: a burst of clients (or of garbage) waits in
/// the kernel for the one thread to accept it, instead of having its SYNs dropped and retried
/// seconds later. The kernel caps the depth at `net.core.somaxconn`.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // A restarted exporter can take its port back while old connections linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// The answer to one request.
fn answer(
    request: &Request<Incoming>,
    fleets: &Fleets,
    answers: &Arc<Semaphore>,
) -> Response<Text> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n", None);
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let Ok(permit) = answers.clone().try_acquire_owned() else {
                return text(StatusCode::SERVICE_UNAVAILABLE, "busy, retry\n", None);
            };
            let mut response = text(StatusCode::OK, "", Some(permit));
            response.body_mut().data = Some(Bytes::from(fleets.scrape()));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/" => text(
            StatusCode::OK,
            "mosaic-hb exporter: the fleet's metrics are at /metrics\n",
            None,
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n", None),
    }
}

fn text(
    status: StatusCode,
    body: &'static str,
    permit: Option<OwnedSemaphorePermit>,
) -> Response<Text> {
    let mut response = Response::new(Text {
        data: Some(Bytes::from_static(body.as_bytes())),
        _permit: permit,
    });
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A whole answer in one frame, holding its place among [`MAX_ANSWERS`] until it is sent or
/// dropped.
struct Text {
    data: Option<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Body for Text {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.data.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

/*!
`mosaic-hb exporter`: the fleet's metrics over HTTP, read fresh at every scrape.

```text
mosaic-hb exporter [--listen ADDR] [--fleet NAME]... [--stale-after N] [DIR...]
```

`GET /metrics` reads every heartbeat directory at that moment (the same scan and
classification as `mosaic-hb status`, so a killed sidecar is `stale` at the next scrape; scrapes
that come while the last reading is younger than it took to make share it) and answers with the families of [`mosaic_core::status::metrics`]; `GET /` answers one line; anything
else is 404 (405 for a method other than GET or HEAD). Nothing else is served.

# A small server that garbage cannot stall

hyper parses HTTP (no parser of ours) on a one-thread tokio runtime: one thread, whatever the
number of clients. Every local user can connect, so the exporter must keep answering scrapes
whatever they do with their sockets. The limits, all constants here and in [`places`]:

- at most [`places::MAX_CONNECTIONS`] connections open at once; a newcomer always gets a place,
  by cutting the oldest connection that has not sent a whole request, else the one answered the
  longest ([`places`]): idle sockets, however many and however fast they are renewed, push out
  only each other;
- a request head must come whole within [`HEAD_TIME`] of the first read, and be at most
  [`MAX_HEAD`] bytes (431); a body is never read; one request per connection (no keep-alive);
- each connection has [`CONNECTION_TIME`] in all, to ask and to read the answer;
- after each accepted connection the loop lets the connections run before it accepts the next,
  so a request already sent is read before a flood of newcomers can make its connection old;
- a `/metrics` answer is one shared buffer, read again only once the last reading is older
  than the time it took, and older answers still being sent are capped at
  [`places::MAX_HELD`] bytes ([`places`]).

So memory is bounded by the newest answer, `MAX_HELD` and `MAX_CONNECTIONS` small buffers,
whatever the number of clients or how slowly they read, and reading the directories takes at
most half the thread, however many scrapes come.

SIGTERM or SIGINT stops it: it stops listening at once, lets answers in flight finish for up
to [`GRACE`], and exits 0.
*/

mod places;

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
use hyper_util::rt::{TokioIo, TokioTimer};
use mosaic_core::exit::Exit;
use mosaic_core::status::{self, metrics};
use mosaic_core::{dirs, why};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::places::Places;

/// Loopback only: the metrics name every agent, and a port on every interface would show them
/// to the network. Pass `--listen 0.0.0.0:PORT` to be scraped from elsewhere.
const DEFAULT_LISTEN: &str = "127.0.0.1:9479";
/// All the time one connection gets: to send its request and to read the answer.
const CONNECTION_TIME: Duration = Duration::from_secs(5);
/// The time to send a whole request head, from the first read: a client on this host (or
/// Prometheus across a network) sends it in one go.
const HEAD_TIME: Duration = Duration::from_secs(1);
/// The largest request head read (hyper's smallest buffer limit).
const MAX_HEAD: usize = 8 * 1024;
/// Connections the kernel queues for us to accept.
const BACKLOG: u32 = 4096;
/// How long answers in flight may finish after SIGTERM.
const GRACE: Duration = Duration::from_secs(1);

const HELP: &str = "\
Limits: 256 connections at once (a newcomer cuts the oldest idle one), one request per
connection, 1 s to send it, 5 s per connection in all, request heads up to 8 KiB; answers
shared, older ones still being sent capped at 16 MiB.

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
    let places = Arc::new(Places::default());
    let mut connections = JoinSet::new();
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
        // Ended connections leave a result behind until joined.
        while connections.try_join_next().is_some() {}
        let id = places.number();
        let cut = connections.spawn(connection(stream, id, fleets.clone(), places.clone()));
        places.admit(id, cut);
        // Let the connections run (this one's request is read if it is there) before the
        // next accept: a flood of newcomers cannot age a request that was already sent.
        tokio::task::yield_now().await;
    }
    drop(listener);
    let _ = tokio::time::timeout(GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// One connection, from its accept to its end, or until it is cut to make room.
async fn connection(stream: TcpStream, id: u64, fleets: Arc<Fleets>, places: Arc<Places>) {
    // Frees the place however the connection ends, cut (the task dropped) included.
    struct Leave(Arc<Places>, u64);
    impl Drop for Leave {
        fn drop(&mut self) {
            self.0.left(self.1);
        }
    }
    let leave = Leave(places.clone(), id);
    let service = service_fn(move |request: Request<Incoming>| {
        places.asked(id);
        let response = answer(&request, &fleets, &places, id);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIME)
        .keep_alive(false)
        .max_buf_size(MAX_HEAD)
        // A shared answer is queued as it is, never copied into a connection's buffer.
        .writev(true)
        .serve_connection(TokioIo::new(stream), service);
    // A client that is slow to read loses its connection, and its place.
    let _ = tokio::time::timeout(CONNECTION_TIME, connection).await;
    drop(leave);
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

/// The answer to request `id`.
fn answer(
    request: &Request<Incoming>,
    fleets: &Fleets,
    places: &Places,
    id: u64,
) -> Response<Text> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/metrics" => {
            let body = places.answer(id, || Bytes::from(fleets.scrape()));
            let mut response = Response::new(Text(Some(body)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        "/" => text(
            StatusCode::OK,
            "mosaic-hb exporter: the fleet's metrics are at /metrics\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found: try /metrics\n"),
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Text> {
    let mut response = Response::new(Text(Some(Bytes::from_static(body.as_bytes()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A whole answer in one frame (a shared buffer, not a copy).
struct Text(Option<Bytes>);

impl Body for Text {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.take().map(|data| Ok(Frame::data(data))))
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0.as_ref().map_or(0, |d| d.len() as u64))
    }
}

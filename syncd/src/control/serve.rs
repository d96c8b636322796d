//! The control plane's HTTP server: an accept loop over hyper's HTTP/1 connection builder,
//! with the limits of `[control]` ([`crate::config::ControlLimits`]):
//!
//! - at most `max_connections` connections are served at once (TCP and Unix socket together);
//!   further ones stay in the kernel's accept queue until one closes;
//! - a connection that does not deliver a complete request head within
//!   `header_read_timeout` (a slow client, or an idle keep-alive connection) is closed;
//! - every request must finish (body read and handler) within `request_timeout`, else 408
//!   ([`request_timeout`], a middleware on the whole router);
//! - body limits are per route ([`super::router`]): 413 beyond them.
//!
//! With `listen_unix` the same router is served on a Unix socket too (mode 0660; a stale
//! socket file is replaced, anything else at that path is an error; the file is removed on
//! shutdown). Tokens are required there exactly as on TCP.
//!
//! On shutdown the listeners stop accepting, idle connections close, and requests in progress
//! finish (the daemon waits at most [`crate::SHUTDOWN_GRACE`]).

use std::net::SocketAddr;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONNECTION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Control, ControlLimits};
use crate::metrics::Metrics;
use crate::{Error, Result, Services};

/// Mode of the Unix socket: owner and group may connect.
pub const UNIX_SOCKET_MODE: u32 = 0o660;

/// The bound listeners (bound before anything else starts, so a busy port fails start-up).
#[derive(Debug)]
pub struct Listeners {
    tcp: TcpListener,
    unix: Option<(UnixListener, SocketFile)>,
}

/// The Unix socket's file, removed when dropped (shutdown, or a start-up that failed later).
#[derive(Debug)]
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_file(&self.0)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.0.display(), %error, "control plane: could not remove the socket file");
        }
    }
}

impl Listeners {
    /// Binds `control.listen` and, if configured, `control.listen_unix`.
    pub async fn bind(control: &Control) -> Result<Listeners> {
        let tcp = TcpListener::bind(control.listen).await.map_err(|e| {
            Error::io(
                format!("binding the control plane on {}", control.listen),
                e,
            )
        })?;
        let unix = match &control.listen_unix {
            Some(path) => Some((bind_unix(path)?, SocketFile(path.clone()))),
            None => None,
        };
        Ok(Listeners { tcp, unix })
    }

    /// The TCP listener's address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.tcp
            .local_addr()
            .map_err(|e| Error::io("the control plane's address", e))
    }
}

/// Binds a Unix socket at `path`: replaces a stale socket file, refuses to touch anything
/// else, and sets [`UNIX_SOCKET_MODE`].
fn bind_unix(path: &Path) -> Result<UnixListener> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| {
                Error::io(
                    format!("control.listen_unix: removing the stale socket {shown}"),
                    e,
                )
            })?;
            tracing::info!(path = %shown, "control plane: replaced a stale socket file");
        }
        Ok(_) => {
            return Err(Error::io(
                format!("control.listen_unix: {shown}"),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a socket; not touching it",
                ),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::io(
                format!("control.listen_unix: inspecting {shown}"),
                e,
            ));
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| Error::io(format!("control.listen_unix: binding {shown}"), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE)).map_err(
        |e| {
            Error::io(
                format!("control.listen_unix: setting the mode of {shown}"),
                e,
            )
        },
    )?;
    Ok(listener)
}

/// Serves `router` on the listeners until `shutdown`; the accept loops run on `tracker`.
pub fn spawn(
    tracker: &TaskTracker,
    listeners: Listeners,
    router: Router,
    services: &Arc<Services>,
    shutdown: CancellationToken,
) {
    let server = Arc::new(Server {
        router,
        limits: services.config.control.limits,
        metrics: services.metrics.clone(),
        permits: Arc::new(Semaphore::new(
            services.config.control.limits.max_connections,
        )),
        cap_reported: AtomicBool::new(false),
        connections: TaskTracker::new(),
    });
    server.metrics.set("syncd_control_connections", &[], 0.0);
    let Listeners { tcp, unix } = listeners;
    let mut loops = Vec::new();
    loops.push(tokio::spawn(accept_loop(
        server.clone(),
        Tcp(tcp),
        shutdown.clone(),
    )));
    let mut socket_file = None;
    if let Some((listener, file)) = unix {
        loops.push(tokio::spawn(accept_loop(
            server.clone(),
            Unix(listener),
            shutdown.clone(),
        )));
        socket_file = Some(file);
    }
    tracker.spawn(async move {
        for accept in loops {
            if let Err(error) = accept.await {
                tracing::error!(%error, "control plane: an accept loop panicked");
            }
        }
        // The listeners are closed: remove the socket file.
        drop(socket_file);
        server.connections.close();
        server.connections.wait().await;
    });
}

#[derive(Debug)]
struct Server {
    router: Router,
    limits: ControlLimits,
    metrics: Arc<Metrics>,
    permits: Arc<Semaphore>,
    /// Whether reaching the connection cap has been logged (until the cap frees up again).
    cap_reported: AtomicBool,
    connections: TaskTracker,
}

/// A listener the accept loop can take connections from.
trait Acceptor: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    const KIND: &'static str;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Io, String)>> + Send;
}

struct Tcp(TcpListener);
struct Unix(UnixListener);

impl Acceptor for Tcp {
    type Io = tokio::net::TcpStream;
    const KIND: &'static str = "tcp";
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (io, peer) = self.0.accept().await?;
        Ok((io, peer.to_string()))
    }
}

impl Acceptor for Unix {
    type Io = tokio::net::UnixStream;
    const KIND: &'static str = "unix";
    async fn accept(&self) -> std::io::Result<(Self::Io, String)> {
        let (io, _) = self.0.accept().await?;
        Ok((io, "unix".to_string()))
    }
}

async fn accept_loop<A: Acceptor>(server: Arc<Server>, listener: A, shutdown: CancellationToken) {
    loop {
        // Take a connection slot before accepting: at the cap, new connections wait in the
        // kernel's queue instead of being accepted and starved.
        let permit = match server.permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                if !server.cap_reported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        max_connections = server.limits.max_connections,
                        listener = A::KIND,
                        "control plane: connection cap reached; new connections wait"
                    );
                }
                server
                    .metrics
                    .inc("syncd_control_connection_waits_total", &[], 1);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    permit = server.permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return,
                    },
                }
            }
        };
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (io, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // E.g. EMFILE: log, count, back off briefly rather than spin.
                tracing::error!(%error, listener = A::KIND, "control plane: accept failed");
                server
                    .metrics
                    .inc("syncd_control_accept_errors_total", &[], 1);
                drop(permit);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => continue,
                }
            }
        };
        let server_for_conn = server.clone();
        let shutdown = shutdown.clone();
        server.connections.spawn(async move {
            let server = server_for_conn;
            let open = (server.limits.max_connections - server.permits.available_permits()) as f64;
            server.metrics.set("syncd_control_connections", &[], open);
            serve_connection(&server, io, &peer, A::KIND, shutdown).await;
            drop(permit);
            server.cap_reported.store(false, Ordering::Relaxed);
            let open = (server.limits.max_connections - server.permits.available_permits()) as f64;
            server.metrics.set("syncd_control_connections", &[], open);
        });
    }
}

async fn serve_connection<I>(
    server: &Server,
    io: I,
    peer: &str,
    kind: &'static str,
    shutdown: CancellationToken,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(server.router.clone());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.limits.header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let served = tokio::select! {
        served = connection.as_mut() => served,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = served {
        if error.is_timeout() {
            tracing::info!(peer, listener = kind, timeout = ?server.limits.header_read_timeout, "control plane: closed a connection that sent no complete request head in time");
            server.metrics.inc(
                "syncd_control_refused_total",
                &[("reason", "header_timeout")],
                1,
            );
        } else {
            // Clients resetting or sending garbage: worth a trace, not an alarm.
            tracing::debug!(peer, listener = kind, %error, "control plane: connection ended with an error");
        }
    }
}

/// Middleware on the whole router: a request that takes longer than `request_timeout` is
/// answered 408 (and its connection closed); 413s from the body limits are logged and counted
/// here too.
pub async fn request_timeout(
    State(services): State<Arc<Services>>,
    request: Request,
    next: Next,
) -> Response {
    let limit = services.config.control.limits.request_timeout;
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => {
            if response.status() == StatusCode::PAYLOAD_TOO_LARGE {
                tracing::warn!(%method, path, "control plane: request body over the limit (413)");
                services.metrics.inc(
                    "syncd_control_refused_total",
                    &[("reason", "body_too_large")],
                    1,
                );
            }
            response
        }
        Err(_) => {
            tracing::warn!(%method, path, timeout = ?limit, "control plane: request timed out (408)");
            services
                .metrics
                .inc("syncd_control_refused_total", &[("reason", "timeout")], 1);
            (
                StatusCode::REQUEST_TIMEOUT,
                [(CONNECTION, "close")],
                "request timed out\n",
            )
                .into_response()
        }
    }
}

//! The loopback redirect helper for native apps (FACTS §1.4): a tiny HTTP listener on
//! `127.0.0.1:<port>` that waits for the browser to come back from the authorize endpoint.
//!
//! It answers the redirect `GET` with a small HTML page, checks `state` (a wrong one is
//! [`Error::StateMismatch`] and answers 400), reports `error`/`error_description` from the
//! authorization server, ignores unrelated requests such as `/favicon.ico` (404) and gives up
//! after a timeout with a clear [`Error::Auth`].

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use url::Url;

use super::Secret;
use crate::{Error, Result};

/// Largest request head read from the browser.
const MAX_REQUEST: usize = 16 * 1024;
/// How long one connection may take to send its request head.
const PER_CONNECTION: Duration = Duration::from_secs(5);

/// What the authorization server sent back through the browser.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthorizationResponse {
    /// The authorization code (valid for 10 minutes, single use).
    pub code: Secret,
    /// The `state`, equal to the one sent.
    pub state: String,
}

impl fmt::Debug for AuthorizationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizationResponse")
            .field("code", &self.code)
            .field("state", &"<redacted>")
            .finish()
    }
}

/// A listener bound to the loopback redirect URI, waiting for one redirect.
#[derive(Debug)]
pub struct LoopbackListener {
    listener: TcpListener,
    redirect_uri: Url,
}

impl LoopbackListener {
    /// Binds the address of `redirect_uri`, which must be `http://127.0.0.1:<port>/<path>`,
    /// `http://[::1]:<port>/<path>` or `http://localhost:<port>/<path>` (bound on 127.0.0.1).
    /// Port 0 picks a free port; [`redirect_uri`](Self::redirect_uri) then names it.
    pub async fn bind(redirect_uri: &Url) -> Result<LoopbackListener> {
        let addr = loopback_addr(redirect_uri)?;
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::Auth(format!(
                "cannot listen on {addr} for the redirect to {redirect_uri}: {e}"
            ))
        })?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Auth(format!("cannot read the listening address: {e}")))?;
        let mut redirect_uri = redirect_uri.clone();
        if redirect_uri.port() != Some(local.port()) {
            redirect_uri
                .set_port(Some(local.port()))
                .map_err(|()| Error::Config(format!("cannot set the port of {redirect_uri}")))?;
        }
        tracing::debug!(%local, "listening for the OAuth redirect");
        Ok(LoopbackListener {
            listener,
            redirect_uri,
        })
    }

    /// The redirect URI to send in the authorize request (with the actual port).
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// The bound socket address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
    }

    /// Waits up to `timeout` for the redirect to the redirect URI's path and returns its code.
    ///
    /// Requests for other paths are answered 404 and ignored. The redirect itself ends the
    /// wait: with the code if `state` equals `expected_state`, with
    /// [`Error::StateMismatch`] (and a 400 page) if it does not, with [`Error::Auth`] if the
    /// server sent an `error`.
    pub async fn wait(
        self,
        expected_state: impl Into<String>,
        timeout: Duration,
    ) -> Result<AuthorizationResponse> {
        let expected_state = expected_state.into();
        let deadline = Instant::now() + timeout;
        let timed_out = || {
            Error::Auth(format!(
                "no sign-in redirect arrived at {} within {timeout:?}; sign in again",
                self.redirect_uri
            ))
        };
        // Connections are read concurrently: browsers open idle speculative connections,
        // which must not delay the one that carries the redirect.
        let (tx, mut rx) = mpsc::channel::<(String, TcpStream)>(8);
        let mut readers = JoinSet::new();
        loop {
            while readers.try_join_next().is_some() {}
            let (target, mut stream) = tokio::select! {
                () = tokio::time::sleep_until(deadline) => return Err(timed_out()),
                accepted = self.listener.accept() => {
                    match accepted {
                        Ok((stream, peer)) => {
                            readers.spawn(read_connection(stream, peer, tx.clone()));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "accept failed on the redirect listener");
                            // E.g. out of file descriptors: do not spin.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                    continue;
                }
                Some(request) = rx.recv() => request,
            };
            match self.handle(&target, &expected_state) {
                Handled::Ignore => {
                    respond(&mut stream, 404, "Not found", "Nothing here.").await;
                }
                Handled::Done(result) => {
                    match &result {
                        Ok(_) => {
                            respond(
                                &mut stream,
                                200,
                                "Signed in",
                                "You are signed in to SuperOffice. You can close this window.",
                            )
                            .await
                        }
                        Err(Error::StateMismatch) => {
                            respond(
                                &mut stream,
                                400,
                                "Sign-in refused",
                                "The sign-in response does not belong to this sign-in attempt (wrong state). Start again.",
                            )
                            .await
                        }
                        Err(_) => {
                            respond(
                                &mut stream,
                                400,
                                "Sign-in failed",
                                "SuperOffice did not sign you in. See the application for details.",
                            )
                            .await
                        }
                    }
                    return result;
                }
            }
        }
    }

    fn handle(&self, target: &str, expected_state: &str) -> Handled {
        // Origin-form targets only (`/path?query`).
        if !target.starts_with('/') || target.starts_with("//") {
            return Handled::Ignore;
        }
        let Ok(url) = self.redirect_uri.join(target) else {
            return Handled::Ignore;
        };
        if url.path() != self.redirect_uri.path() {
            return Handled::Ignore;
        }
        let mut code = None;
        let mut state = None;
        let mut error = None;
        let mut description = None;
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "code" => code = Some(v.into_owned()),
                "state" => state = Some(v.into_owned()),
                "error" => error = Some(v.into_owned()),
                "error_description" => description = Some(v.into_owned()),
                _ => {}
            }
        }
        if code.is_none() && error.is_none() && state.is_none() {
            // Not a redirect (e.g. the user opened the bare URI): keep waiting.
            return Handled::Ignore;
        }
        let state = state.unwrap_or_default();
        if !constant_time_eq(state.as_bytes(), expected_state.as_bytes()) {
            tracing::warn!("refused a sign-in redirect with the wrong state");
            return Handled::Done(Err(Error::StateMismatch));
        }
        if let Some(error) = error {
            let detail = description.map(|d| format!(": {d}")).unwrap_or_default();
            return Handled::Done(Err(Error::Auth(format!(
                "the authorization server refused the sign-in ({error}{detail})"
            ))));
        }
        match code {
            Some(code) if !code.is_empty() => Handled::Done(Ok(AuthorizationResponse {
                code: Secret::new(code),
                state,
            })),
            _ => Handled::Done(Err(Error::Auth(
                "the sign-in redirect carries no authorization code".into(),
            ))),
        }
    }
}

enum Handled {
    Ignore,
    Done(Result<AuthorizationResponse>),
}

/// The socket address a loopback redirect URI names.
pub(crate) fn loopback_addr(uri: &Url) -> Result<SocketAddr> {
    let bad = |why: &str| {
        Error::Config(format!(
            "redirect URI {uri} {why}; use http://127.0.0.1:<port>/<path>"
        ))
    };
    if uri.scheme() != "http" {
        return Err(bad("is not http"));
    }
    let port = uri.port().ok_or_else(|| bad("has no port"))?;
    match uri.host() {
        Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(SocketAddr::from((ip, port))),
        Some(url::Host::Ipv6(ip)) if ip == Ipv6Addr::LOCALHOST => Ok(SocketAddr::from((ip, port))),
        Some(url::Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
        }
        _ => Err(bad("is not a loopback address")),
    }
}

/// Reads one connection's request head and hands it to the waiting loop; answers 400 to
/// malformed requests and drops connections that send nothing within [`PER_CONNECTION`].
async fn read_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    requests: mpsc::Sender<(String, TcpStream)>,
) {
    match tokio::time::timeout(PER_CONNECTION, read_request_target(&mut stream)).await {
        Ok(Ok(target)) => {
            // The receiver is gone once the wait is over; the connection just closes.
            let _ = requests.send((target, stream)).await;
        }
        Ok(Err(reason)) => {
            tracing::debug!(%peer, reason, "ignored a malformed request on the redirect listener");
            respond(
                &mut stream,
                400,
                "Bad request",
                "This is not a sign-in redirect.",
            )
            .await;
        }
        Err(_) => tracing::debug!(%peer, "closed an idle connection on the redirect listener"),
    }
}

/// Reads the request head and returns the request target of a `GET`.
async fn read_request_target(stream: &mut TcpStream) -> std::result::Result<String, &'static str> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut chunk).await.map_err(|_| "read failed")?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            return Err("request head too large");
        }
    }
    let head = std::str::from_utf8(&buf).map_err(|_| "request head is not UTF-8")?;
    let line = head.lines().next().ok_or("empty request")?;
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err("malformed request line");
    };
    if method != "GET" || !version.starts_with("HTTP/1.") {
        return Err("not an HTTP/1 GET");
    }
    Ok(target.to_string())
}

async fn respond(stream: &mut TcpStream, status: u16, title: &str, message: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        _ => "Not Found",
    };
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;margin:3em\"><h1>{title}</h1><p>{message}</p></body></html>"
    );
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    // The browser may have gone away; nothing to do about it.
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_uris_are_accepted() {
        let ok = |s: &str| loopback_addr(&Url::parse(s).unwrap());
        assert_eq!(ok("http://127.0.0.1:8765/cb").unwrap().port(), 8765);
        assert!(ok("http://[::1]:8765/cb").unwrap().is_ipv6());
        assert!(ok("http://localhost:1/").unwrap().ip().is_loopback());
        assert!(ok("https://127.0.0.1:8765/cb").is_err());
        assert!(ok("http://example.com:8765/cb").is_err());
        assert!(ok("http://127.0.0.1/cb").is_err());
    }

    async fn get(addr: SocketAddr, target: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn ignores_unrelated_requests_then_takes_the_redirect() {
        let l = LoopbackListener::bind(&Url::parse("http://127.0.0.1:0/cb").unwrap())
            .await
            .unwrap();
        assert_ne!(l.redirect_uri().port(), Some(0));
        let addr = l.local_addr();
        let waiting = tokio::spawn(l.wait("st8", Duration::from_secs(5)));
        assert!(get(addr, "/favicon.ico").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, "/cb").await.starts_with("HTTP/1.1 404"));
        let ok = get(addr, "/cb?code=abc%2B1&state=st8").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        assert!(ok.contains("close this window"));
        let response = waiting.await.unwrap().unwrap();
        assert_eq!(response.code.expose(), "abc+1");
        assert!(!format!("{response:?}").contains("abc"));
    }

    #[tokio::test]
    async fn an_idle_connection_does_not_delay_the_redirect() {
        let l = LoopbackListener::bind(&Url::parse("http://127.0.0.1:0/cb").unwrap())
            .await
            .unwrap();
        let addr = l.local_addr();
        let started = Instant::now();
        let waiting = tokio::spawn(l.wait("s", Duration::from_secs(20)));
        let _idle = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            get(addr, "/cb?code=c&state=s")
                .await
                .starts_with("HTTP/1.1 200")
        );
        assert_eq!(waiting.await.unwrap().unwrap().code.expose(), "c");
        assert!(
            started.elapsed() < PER_CONNECTION,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn server_errors_are_reported() {
        let l = LoopbackListener::bind(&Url::parse("http://127.0.0.1:0/cb").unwrap())
            .await
            .unwrap();
        let addr = l.local_addr();
        let waiting = tokio::spawn(l.wait("s", Duration::from_secs(5)));
        let page = get(
            addr,
            "/cb?error=access_denied&error_description=No%20consent&state=s",
        )
        .await;
        assert!(page.starts_with("HTTP/1.1 400"));
        let err = waiting.await.unwrap().unwrap_err();
        assert!(
            err.to_string().contains("access_denied: No consent"),
            "{err}"
        );
    }
}

//! A fake service manager for tests that run `syncd run` as systemd would: the `NOTIFY_SOCKET`
//! datagram socket and the messages (`READY=1`, `STATUS=…`, `WATCHDOG=1`, `STOPPING=1`) sent to it.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

/// The service manager's end of `NOTIFY_SOCKET`: a datagram socket the test binds.
#[derive(Debug)]
pub struct FakeSystemd {
    socket: UnixDatagram,
    /// Every message received so far, in order.
    pub messages: Vec<String>,
}

impl FakeSystemd {
    /// Binds the socket at `path`.
    pub fn bind(path: &Path) -> FakeSystemd {
        let socket = UnixDatagram::bind(path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        FakeSystemd {
            socket,
            messages: Vec::new(),
        }
    }

    /// Collects messages until one contains `needle` or `timeout` passes.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.messages.iter().any(|m| m.contains(needle)) {
                return true;
            }
            let mut buffer = [0u8; 4096];
            if let Ok(n) = self.socket.recv(&mut buffer) {
                self.messages
                    .push(String::from_utf8_lossy(&buffer[..n]).into_owned());
            }
        }
        self.messages.iter().any(|m| m.contains(needle))
    }

    /// How many messages so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.messages.iter().filter(|m| m.contains(needle)).count()
    }
}

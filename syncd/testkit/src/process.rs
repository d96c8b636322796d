//! A `syncd` child process for tests that run the binary: killed when dropped, so a failing
//! check does not leave the daemon running.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

/// Owns a child process and kills it on drop unless it has already exited.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl Deref for KillOnDrop {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

/// Starts `BINARY --config CONFIG --log-format human run` outside systemd, logging warnings,
/// with `SYNCD_FAILPOINT` set when given; its stderr lines arrive on the receiver.
pub fn run_syncd(
    binary: &Path,
    config: &Path,
    failpoint: Option<&str>,
) -> (KillOnDrop, mpsc::Receiver<String>) {
    let mut command = Command::new(binary);
    command
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("human")
        .arg("run")
        .env_remove("SYNCD_FAILPOINT")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(point) = failpoint {
        command.env("SYNCD_FAILPOINT", point);
    }
    let mut child = command.spawn().expect("syncd starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (KillOnDrop(child), lines)
}

/// `syncd --config CONFIG run` with its log (human format, `warn,syncd=info`) appended to
/// `log`: the crash tests' daemon, killed and restarted over and over on the same log.
pub fn spawn_logged(binary: &Path, config: &Path, log: &Path) -> KillOnDrop {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the daemon's log");
    Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("--log-format")
        .arg("human")
        .arg("run")
        .env("RUST_LOG", "warn,syncd=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(KillOnDrop)
        .expect("spawn syncd")
}

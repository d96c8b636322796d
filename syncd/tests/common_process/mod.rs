//! A `syncd` child process for tests that run the binary: killed when dropped, so a failing
//! check does not leave the daemon running.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// Owns a child process and kills it on drop unless it has already exited.
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

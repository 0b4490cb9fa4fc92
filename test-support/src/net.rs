//! Loopback ports.

use std::net::TcpListener;

/// A port free on 127.0.0.1 now: nothing listens on it until the process
/// given it binds it.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

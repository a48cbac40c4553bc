//! Steady traffic through the cluster lab (`crate::cluster`) while a test
//! changes the proxy under it (restart.rs, migrate.rs): from the client
//! outside the cluster CIDR, a new TCP connection every 20 ms and one
//! connection held open, echoing a line every 50 ms. Every failure is
//! recorded with what failed.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::cluster::{tcp_flow, Cluster, Pod};

/// A line echo server on `port` of `pod`'s address, inside its namespace:
/// each connection gets its own thread and every line back.
pub fn echo_server(pod: &Pod, port: u16) {
    let ip = pod.ip;
    let listener = pod
        .ns
        .run(move || TcpListener::bind((ip, port)).unwrap_or_else(|e| panic!("bind: {e}")));
    std::thread::spawn(move || {
        for s in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    if writeln!(w, "{line}").is_err() {
                        break;
                    }
                }
            });
        }
    });
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    echoes: AtomicU64,
}

/// The running traffic.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    errors: Arc<Mutex<Vec<String>>>,
    clients: Vec<JoinHandle<()>>,
}

/// What the traffic saw, once stopped.
#[derive(Debug)]
pub struct Report {
    /// New connections served.
    pub ok: u64,
    /// New connections that failed.
    pub failed: u64,
    /// Lines echoed on the held connection.
    pub echoes: u64,
    /// Every failure, the watchers' ones included.
    pub errors: Vec<String>,
}

impl Report {
    /// One line: the connections lost, and whether the held one lasted.
    pub fn summary(&self) -> String {
        let long = if self.errors.iter().any(|e| e.starts_with("the long")) {
            "cut"
        } else {
            "kept"
        };
        format!(
            "connections lost: {} of {} new, long connection {long} ({} echoes)",
            self.failed,
            self.ok + self.failed,
            self.echoes
        )
    }

    /// Panics unless nothing failed and both kinds of traffic flowed.
    pub fn assert_clean(&self) {
        assert!(self.errors.is_empty(), "{}", self.errors.join("\n"));
        assert!(self.ok > 0, "no new connection was served");
        assert!(self.echoes > 0, "the held connection never echoed");
    }
}

impl Traffic {
    /// Starts the two clients in `cluster`'s outside client: new
    /// connections to `short_to`, one held to `long_to` (a line echo
    /// server, [`echo_server`]).
    pub fn start(cluster: &Cluster, short_to: SocketAddr, long_to: SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let short = {
            let (stop, counts, errors) = (stop.clone(), counts.clone(), errors.clone());
            cluster.client_out.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match tcp_flow(short_to) {
                        Ok(_) => counts.ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            errors.lock().unwrap().push(format!("new connection: {e}"));
                            counts.failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let long = {
            let (stop, counts, errors) = (stop.clone(), counts.clone(), errors.clone());
            cluster.client_out.spawn(move || {
                let s = TcpStream::connect_timeout(&long_to, Duration::from_secs(3))
                    .unwrap_or_else(|e| panic!("the long connection: {e}"));
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let mut back = String::new();
                    let sent = writeln!(w, "ping {n}");
                    match sent.and_then(|_| r.read_line(&mut back)) {
                        Ok(_) if back.trim_end() == format!("ping {n}") => {
                            counts.echoes.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            errors
                                .lock()
                                .unwrap()
                                .push(format!("the long connection, ping {n}: {other:?} {back:?}"));
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Traffic {
            stop,
            counts,
            errors,
            clients: vec![short, long],
        }
    }

    /// The flag that says the traffic is over, for watcher threads.
    pub fn stopped(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Where watcher threads record what they saw wrong.
    pub fn errors(&self) -> Arc<Mutex<Vec<String>>> {
        self.errors.clone()
    }

    /// Lets two seconds of traffic pass, then prints the counts so far
    /// under `name`.
    pub fn phase(&self, name: &str) {
        std::thread::sleep(Duration::from_secs(2));
        eprintln!(
            "{name}: {} new connections served, {} failed, {} echoes on the long one",
            self.counts.ok.load(Ordering::Relaxed),
            self.counts.failed.load(Ordering::Relaxed),
            self.counts.echoes.load(Ordering::Relaxed)
        );
    }

    /// Says stop to the clients and to watchers ([`Traffic::stopped`]);
    /// join the watchers, then [`Traffic::finish`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// Stops the clients, waits for them, and reports.
    pub fn finish(self) -> Report {
        self.stop();
        for client in self.clients {
            client.join().unwrap();
        }
        let errors = self.errors.lock().unwrap().clone();
        Report {
            ok: self.counts.ok.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            echoes: self.counts.echoes.load(Ordering::Relaxed),
            errors,
        }
    }
}

//! `zop-worker agent` exits within moments of SIGTERM while its gateway is down or hung:
//! whether it is registering, heartbeating or polling for work, every wait on the
//! gateway races the stop request. Each test runs the real binary and times its exit.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use zop_worker::agent::{AgentState, hardware_key, save_state};

/// The requirement; a prompt exit takes a fraction of a second.
const EXIT_LIMIT: Duration = Duration::from_secs(10);
/// How long the agent may take to reach the state a test stops it in (a cold machine
/// running tests in parallel is slow).
const SETUP_LIMIT: Duration = Duration::from_secs(60);

/// A running `zop-worker agent` and its log lines; killed when dropped.
struct Agent {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Vec<String>,
}

impl Agent {
    fn start(gateway: &str, dir: &Path) -> Self {
        let ca = dir.join("ca.pem");
        let pem = zop_operator::gateway::tls::self_signed(&[]).unwrap();
        std::fs::write(&ca, pem.cert).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_zop-worker"))
            .args(["agent", "--gateway", gateway, "--group-key", "zgk_bogus"])
            .args(["--bench-ms", "100", "--device", "cpu"])
            .arg("--ca-cert")
            .arg(&ca)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env("RUST_LOG", "info")
            .env_remove("ZOP_METRICS_BIND")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            log: Vec::new(),
        }
    }

    /// Waits until the agent logs a line containing `text`.
    fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + SETUP_LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.log.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("the agent never logged {text:?}:\n{}", self.log.join("\n"));
    }

    /// Sends SIGTERM; how long the agent took to exit, and how it exited.
    fn terminate(&mut self) -> (Duration, ExitStatus) {
        let pid = self.child.id().to_string();
        let start = Instant::now();
        let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(kill.success(), "kill -TERM {pid} failed");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (start.elapsed(), status);
            }
            if start.elapsed() > EXIT_LIMIT {
                let _ = self.child.kill();
                self.log.extend(self.lines.try_iter());
                panic!(
                    "the agent was still running {EXIT_LIMIT:?} after SIGTERM:\n{}",
                    self.log.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the agent and checks it exited on its own, in time.
    fn stop_and_check(&mut self, case: &str) {
        let (took, status) = self.terminate();
        println!("{case}: the agent exited {took:?} after SIGTERM ({status})");
        self.log.extend(self.lines.try_iter());
        // Killed by the signal instead would mean its handler was not yet installed.
        assert!(status.success(), "{status}:\n{}", self.log.join("\n"));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway that accepts connections and never answers; hands over each connection,
/// which stays open while the receiver holds it.
fn hung_gateway() -> (String, mpsc::Receiver<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            if tx.send(conn).is_err() {
                break;
            }
        }
    });
    (url, rx)
}

/// `n` connections the agent opened to `gateway`, held open.
fn connections(gateway: &mpsc::Receiver<TcpStream>, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            gateway
                .recv_timeout(SETUP_LIMIT)
                .unwrap_or_else(|_| panic!("the agent opened {i} of {n} connections"))
        })
        .collect()
}

#[test]
fn a_registered_agent_stops_while_its_heartbeat_and_work_poll_hang() {
    let dir = tempfile::tempdir().unwrap();
    // A stored token and benchmark for this hardware: the agent goes straight to work.
    let state = AgentState {
        device: "test-host".into(),
        token: "zdt_test-host_00".into(),
        hardware: hardware_key(&zop_worker::probe::identify()),
        benchmark: None,
    };
    save_state(&dir.path().join("state"), &state).unwrap();
    let (url, gateway) = hung_gateway();
    let mut agent = Agent::start(&url, dir.path());
    agent.wait_for_log("agent running");
    // The work poll and the first heartbeat, both waiting on the gateway.
    let _held = connections(&gateway, 2);
    std::thread::sleep(Duration::from_millis(500));
    agent.stop_and_check("heartbeat and work poll hung");
}

#[test]
fn an_agent_stops_while_its_registration_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let (url, gateway) = hung_gateway();
    let mut agent = Agent::start(&url, dir.path());
    let _held = connections(&gateway, 1);
    std::thread::sleep(Duration::from_millis(500));
    agent.stop_and_check("registration hung");
}

#[test]
fn an_agent_stops_while_it_backs_off_from_an_unreachable_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut agent = Agent::start(&format!("https://127.0.0.1:{port}"), dir.path());
    agent.wait_for_log("registration failed; retrying");
    agent.stop_and_check("registration backing off");
}

//! Helpers shared by the integration tests: a throw-away project folder with
//! its own config, the real `kamwatch` binary, and a real SMTP server on
//! 127.0.0.1 that keeps what it receives.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The instant a test pins the daemon's clock to (`KAMWATCH_NOW`): noon
/// on 2026-11-28 in Shanghai, the shipped zone, so "today" is [`today`]
/// whatever the machine's date (and it is not the review's day 1).
pub const NOW: &str = "2026-11-28T04:00:00Z";

/// "Today" for a daemon started with `KAMWATCH_NOW` = [`NOW`].
pub fn today() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 11, 28).unwrap()
}

/// The repository root (where Cargo.toml is).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture from tests/data/.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/data").join(name)
}

/// A temporary project: config.yaml at its root, inbox/, var/, and the
/// shipped rules (copied, so a test may edit them).
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// The shipped config with paths moved into a temp folder; mail goes to
    /// var/mail as .eml files.
    pub fn new() -> Project {
        Project::with_mail("")
    }

    /// Like `new`, with SMTP to 127.0.0.1:`port` (plaintext, loopback).
    pub fn with_smtp(port: u16) -> Project {
        Project::with_mail(&format!(
            "\n  smtp:\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout_secs: 5\n"
        ))
    }

    fn with_mail(smtp: &str) -> Project {
        let dir = tempfile::tempdir().expect("tempdir");
        let shipped = std::fs::read_to_string(repo().join("config/kamwatch.yaml")).unwrap();
        let cfg = shipped
            .replace("\nroot: ..\n", "\nroot: .\n")
            .replace("settle_ms: 300", "settle_ms: 150")
            .replace("  dir: var/mail\n", &format!("  dir: var/mail{smtp}\n"));
        assert!(cfg.contains("root: ."), "the shipped config changed shape");
        std::fs::write(dir.path().join("config.yaml"), cfg).unwrap();
        std::fs::create_dir_all(dir.path().join("rules")).unwrap();
        for e in std::fs::read_dir(repo().join("rules")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rhai") {
                std::fs::copy(&p, dir.path().join("rules").join(p.file_name().unwrap())).unwrap();
            }
        }
        std::fs::create_dir_all(dir.path().join("inbox")).unwrap();
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("config.yaml")
    }

    /// Replaces `from` by `to` in the project's config; `from` must be
    /// there, so a changed shipped config cannot turn the edit into a
    /// silent no-op.
    pub fn edit_config(&self, from: &str, to: &str) {
        let cfg = std::fs::read_to_string(self.config()).unwrap();
        assert!(cfg.contains(from), "the config has no {from:?}");
        std::fs::write(self.config(), cfg.replace(from, to)).unwrap();
    }

    /// Adds `lines` (indented YAML keys) to the orders dataset's config.
    pub fn orders_config(&self, lines: &str) {
        self.edit_config(
            "  orders:\n    files:",
            &format!("  orders:\n{lines}    files:"),
        );
    }

    /// Runs `kamwatch --config <this project's config> args...` to the end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running kamwatch")
    }

    /// The command, not yet started.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kamwatch"));
        c.arg("--config").arg(self.config()).args(args);
        c.current_dir(self.dir.path());
        c.env_remove("KAMWATCH_LOG");
        c
    }

    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("var/kamwatch.db")).expect("opening the test database")
    }

    /// Files in a folder below the project, recursively, sorted. A folder
    /// that does not exist holds none only if the config names it (made on
    /// first need, like var/rejected); any other missing path fails the
    /// test.
    pub fn files_under(&self, rel: &str) -> Vec<PathBuf> {
        let dir = self.path(rel);
        if !dir.is_dir() {
            // Only a folder the config names may be missing (kamwatch makes
            // it when first needed): a misspelt path must not make every
            // "nothing there" check pass.
            assert!(
                self.config_names(rel),
                "{} does not exist and the config names no folder {rel}",
                dir.display()
            );
            return Vec::new();
        }
        let mut out = Vec::new();
        walk(&dir, &mut out);
        out.sort();
        out
    }

    /// Whether the config's folder `rel` (e.g. `var/rejected`, which is
    /// made only when first needed) holds no file. `rel` must be a folder
    /// the config names, so a misspelt path cannot pass.
    pub fn nothing_under(&self, rel: &str) -> bool {
        assert!(self.config_names(rel), "the config names no folder {rel}");
        self.files_under(rel).is_empty()
    }

    /// Whether the config has a `key: rel` line.
    fn config_names(&self, rel: &str) -> bool {
        std::fs::read_to_string(self.config())
            .unwrap()
            .lines()
            .any(|l| l.trim_end().ends_with(&format!(": {rel}")))
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// What a command printed and how it ended, for assertion messages.
pub fn show(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

/// Asserts the exit code, showing the output when it is wrong.
pub fn assert_exit(o: &Output, want: i32) {
    assert_eq!(o.status.code(), Some(want), "wrong exit code\n{}", show(o));
}

impl Project {
    /// Runs `kamwatch` and asserts it succeeded.
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let o = self.run(args);
        assert_exit(&o, 0);
        o
    }

    /// Generates sample exports (`accounts`, ending 2026-11-28, `seed`)
    /// and ingests them.
    pub fn with_generated_history(&self, accounts: usize, seed: u64) {
        let staging = self.path("staging");
        self.run_ok(&[
            "generate",
            "--out",
            staging.to_str().unwrap(),
            "--accounts",
            &accounts.to_string(),
            "--end",
            "2026-11-28",
            "--seed",
            &seed.to_string(),
        ]);
        let files: Vec<String> = self
            .files_under("staging")
            .iter()
            .map(|f| f.to_string_lossy().into_owned())
            .collect();
        let mut args = vec!["ingest"];
        args.extend(files.iter().map(String::as_str));
        self.run_ok(&args);
    }
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// One message as the SMTP server received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: Vec<u8>,
    /// When the server accepted it (end of DATA).
    pub at: std::time::Instant,
}

/// A real SMTP server (mailin-embedded) on 127.0.0.1, on a free port. It
/// lives as long as the test process; `received` is what it accepted.
pub struct SmtpServer {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
    /// AUTH PLAIN attempts: (user, accepted).
    pub auths: Arc<Mutex<Vec<(String, bool)>>>,
    /// Recipients refused for good (550) at RCPT TO.
    pub rejects: Arc<Mutex<Vec<String>>>,
}

/// A self-signed certificate for 127.0.0.1 and localhost (rcgen), written
/// as cert.pem and key.pem into `dir`.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("generating a certificate");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

#[derive(Clone)]
struct Collect {
    /// (user, password) AUTH PLAIN accepts; every attempt is logged in `auths`.
    login: Option<(String, String)>,
    auths: Arc<Mutex<Vec<(String, bool)>>>,
    rejects: Arc<Mutex<Vec<String>>>,
    all: Arc<Mutex<Vec<Received>>>,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for Collect {
    fn rcpt(&mut self, to: &str) -> mailin_embedded::Response {
        if self.rejects.lock().unwrap().iter().any(|r| r == to) {
            mailin_embedded::response::NO_MAILBOX
        } else {
            mailin_embedded::response::OK
        }
    }

    fn auth_plain(
        &mut self,
        _authorization_id: &str,
        authentication_id: &str,
        password: &str,
    ) -> mailin_embedded::Response {
        let ok = self
            .login
            .as_ref()
            .is_some_and(|(u, p)| u == authentication_id && p == password);
        self.auths
            .lock()
            .unwrap()
            .push((authentication_id.to_string(), ok));
        if ok {
            mailin_embedded::response::AUTH_OK
        } else {
            mailin_embedded::response::INVALID_CREDENTIALS
        }
    }

    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.from = from.to_string();
        self.to = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        self.all.lock().unwrap().push(Received {
            from: self.from.clone(),
            to: std::mem::take(&mut self.to),
            data: std::mem::take(&mut self.data),
            at: std::time::Instant::now(),
        });
        mailin_embedded::response::OK
    }
}

impl SmtpServer {
    pub fn start() -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        SmtpServer::serve(listener, None)
    }

    /// Plaintext, on a given port (e.g. one that was down before).
    pub fn start_on(port: u16) -> SmtpServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("binding the port again");
        SmtpServer::serve(listener, None)
    }

    /// STARTTLS with the certificate and key given, and AUTH PLAIN that
    /// accepts only `user` / `password` (mailin refuses AUTH before TLS).
    pub fn start_tls(cert: &Path, key: &Path, user: &str, password: &str) -> SmtpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
        let ssl = mailin_embedded::SslConfig::SelfSigned {
            cert_path: cert.to_string_lossy().into_owned(),
            key_path: key.to_string_lossy().into_owned(),
        };
        SmtpServer::serve(
            listener,
            Some((ssl, user.to_string(), password.to_string())),
        )
    }

    fn serve(
        listener: TcpListener,
        tls: Option<(mailin_embedded::SslConfig, String, String)>,
    ) -> SmtpServer {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let auths = Arc::new(Mutex::new(Vec::new()));
        let rejects = Arc::new(Mutex::new(Vec::new()));
        let (ssl, login) = match tls {
            Some((ssl, u, p)) => (ssl, Some((u, p))),
            None => (mailin_embedded::SslConfig::None, None),
        };
        let with_auth = login.is_some();
        let handler = Collect {
            login,
            auths: auths.clone(),
            rejects: rejects.clone(),
            all: received.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = mailin_embedded::Server::new(handler);
        server
            .with_name("test.local")
            .with_ssl(ssl)
            .unwrap()
            .with_num_threads(2)
            .with_tcp_listener(listener);
        if with_auth {
            server.with_auth(mailin_embedded::AuthMechanism::Plain);
        }
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        SmtpServer {
            port,
            received,
            auths,
            rejects,
        }
    }

    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Polls `f` every 50 ms until it returns `Some`, or panics after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > end {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Kills the daemon if a test fails before it stops it.
pub struct Daemon(pub Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Daemon {
    pub fn start(p: &Project) -> Daemon {
        Daemon::start_with(p, &[])
    }

    /// Starts `kamwatch run` with extra environment variables; its stderr
    /// goes to daemon.log in the project.
    pub fn start_with(p: &Project, env: &[(&str, &str)]) -> Daemon {
        let log = std::fs::File::create(p.path("daemon.log")).unwrap();
        let child = p
            .command(&["run"])
            .env("KAMWATCH_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting kamwatch run");
        Daemon(Some(child))
    }

    /// SIGTERM, then the exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let mut c = self.0.take().unwrap();
        let pid = c.id().to_string();
        signal(&pid, "TERM");
        for _ in 0..200 {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        panic!("kamwatch did not stop within 10 s of SIGTERM");
    }
    /// Sends a signal (e.g. "HUP") to the daemon.
    pub fn signal(&self, sig: &str) {
        let pid = self.0.as_ref().unwrap().id().to_string();
        signal(&pid, sig);
    }

    /// The daemon's log so far.
    pub fn log(p: &Project) -> String {
        std::fs::read_to_string(p.path("daemon.log")).unwrap_or_default()
    }
}

fn signal(pid: &str, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), pid])
        .status()
        .unwrap();
    assert!(ok.success(), "kill -{sig} {pid}");
}

/// The (rule, account id) pairs a warning or digest lists, from the
/// "规则 R · 客户 A · 评估日期 D" line each item has in the text part
/// ("rule R · account A · as of D" in English).
pub fn listed(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            // The line is in the message's language.
            let (rest, account) = match l.trim().strip_prefix("规则 ") {
                Some(rest) => (rest, "客户 "),
                None => (l.trim().strip_prefix("rule ")?, "account "),
            };
            let mut parts = rest.split(" · ");
            let rule = parts.next()?.to_string();
            let id = parts.next()?.strip_prefix(account)?.to_string();
            Some((rule, id))
        })
        .collect()
}

/// A TCP relay on 127.0.0.1 to `target` that counts the connections it
/// accepts: how many SMTP sessions a client opened.
pub fn counting_relay(target: u16) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                continue;
            };
            let (mut c1, mut s1) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let (mut c2, mut s2) = (client, server);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c1, &mut s1);
                let _ = s1.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (port, count)
}

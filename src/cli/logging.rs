//! CLI logging: where log lines go — journald when systemd runs the daemon
//! with the journal as stderr, otherwise stderr, never failing. Touches
//! only stderr and the journal socket.

/// stderr for log lines, never failing: a line that cannot be written (disk
/// full, stderr closed or a broken pipe) is dropped. tracing-subscriber
/// reports a failed write with `eprintln!`, which panics on that same
/// stderr ("failed printing to stderr"): logging must never stop the daemon.
struct LossyStderr;

impl std::io::Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Logs to journald when systemd started us with the journal as stderr
/// (`$JOURNAL_STREAM`), otherwise to stderr. `KAMWATCH_LOG` overrides the
/// level given.
pub fn init(level: &str, daemon: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("KAMWATCH_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if daemon
        && std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(journald.with_syslog_identifier("kamwatch".into()))
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LossyStderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

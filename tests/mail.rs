//! Warning mails through a real SMTP server on 127.0.0.1: STARTTLS with a
//! self-signed certificate trusted through mail.smtp.ca_file, AUTH with a
//! password file, the MIME structure (text + HTML + inline chart), the
//! decoded subject and HTML escaping; an outage that loses nothing; the
//! `mail test` and `mail preview` tools.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;

use mail_parser::{MessageParser, MimeHeaders as _};

use crate::support::*;

const MASTER: &str = "客户主数据.csv";
const ORDERS: &str = "销售明细_202609-10.csv";
const VISITS: &str = "拜访记录_202609-10.csv";
const EVIL: &str = "<img src=x onerror=alert(1)>";

fn show(o: &Output) -> String {
    format!(
        "status: {:?}\n--- stdout ---\n{}--- stderr ---\n{}",
        o.status,
        stdout(o),
        stderr(o)
    )
}

fn ok(o: Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    stdout(&o)
}

/// The project's config with `mail:` additions (smtp, digest off), the
/// fixtures ingested, KH1001 renamed to a hostile name.
fn project(p: Project, smtp: &str) -> Project {
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg
        .replace("  dir: var/mail\n", &format!("  dir: var/mail\n{smtp}"))
        .replace(
            "    enabled: true\n    # Critical",
            "    enabled: false\n    # Critical",
        );
    assert!(
        cfg.contains("enabled: false"),
        "the shipped config changed shape"
    );
    std::fs::write(p.config(), cfg).unwrap();
    let master = std::fs::read_to_string(fixture(MASTER))
        .unwrap()
        .replace("KH1001,华联超市,", &format!("KH1001,{EVIL},"));
    std::fs::write(p.path(MASTER), master).unwrap();
    let files = [p.path(MASTER), fixture(ORDERS), fixture(VISITS)]
        .map(|f| f.to_string_lossy().into_owned());
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    ok(p.run(&args));
    p
}

/// A TLS + AUTH server and a project that sends to it through a password
/// file and the server's certificate as ca_file.
fn tls_project() -> (SmtpServer, Project) {
    let p = Project::new();
    let (cert, key) = self_signed(p.dir.path());
    let server = SmtpServer::start_tls(&cert, &key, "kamwatch", "s3cret pass");
    let pw = p.path("smtp-password");
    std::fs::write(&pw, "s3cret pass\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let smtp = format!(
        "  smtp:\n    host: 127.0.0.1\n    port: {}\n    security: starttls\n    user: kamwatch\n    password_file: {}\n    ca_file: {}\n    timeout_secs: 5\n",
        server.port,
        pw.display(),
        cert.display()
    );
    (server, project(p, &smtp))
}

fn body_text(m: &mail_parser::Message) -> String {
    m.body_text(0).map(|t| t.into_owned()).unwrap_or_default()
}

#[test]
fn tls_auth_mail_has_both_parts_an_inline_chart_and_escapes_data() {
    let (server, p) = tls_project();
    let out = ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let got = server.messages();
    assert!(!got.is_empty(), "nothing arrived\n{out}");
    let auths = server.auths.lock().unwrap().clone();
    assert!(
        auths.iter().any(|(u, ok)| u == "kamwatch" && *ok),
        "no successful AUTH (mailin allows AUTH only after STARTTLS): {auths:?}"
    );
    let (pending, sent): (i64, i64) = p
        .db()
        .query_row(
            "SELECT SUM(state = 'pending'), SUM(state = 'sent') FROM outbox",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((pending, sent as usize), (0, got.len()));

    // The warning about the hostile account name.
    let raw = got
        .iter()
        .find(|r| {
            let m = MessageParser::default().parse(&r.data).unwrap();
            listed(&body_text(&m)).iter().any(|(_, a)| a == "KH1001")
        })
        .expect("a warning about KH1001");
    let m = MessageParser::default().parse(&raw.data).unwrap();
    let subject = m.subject().unwrap().to_string();
    assert!(subject.starts_with("[kamwatch] "), "{subject}");
    assert!(subject.contains(EVIL), "decoded subject: {subject}");
    // Headers on the wire are ASCII: RFC 2047 encoded words.
    let head = String::from_utf8_lossy(
        &raw.data[..raw.data.windows(4).position(|w| w == b"\r\n\r\n").unwrap()],
    )
    .into_owned();
    assert!(head.is_ascii(), "non-ASCII header bytes:\n{head}");
    assert!(m.message_id().is_some_and(|id| id.ends_with("@kamwatch")));

    // multipart/alternative: text first, then HTML inside multipart/related.
    let ct = m.content_type().unwrap();
    assert_eq!(
        (ct.ctype(), ct.subtype()),
        ("multipart", Some("alternative"))
    );
    let text = body_text(&m);
    assert!(text.contains(EVIL), "the text part shows the name as is");
    assert!(text.contains("评估日期 2026-10-31"), "{text}");
    let html = m.body_html(0).unwrap().into_owned();
    assert!(!html.contains(EVIL), "unescaped name in the HTML:\n{html}");
    assert!(
        html.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "{html}"
    );
    assert!(html.contains("负责人"), "{html}");

    // The chart: an inline PNG whose Content-ID the HTML references.
    let img = m
        .parts
        .iter()
        .find(|part| {
            part.content_type()
                .is_some_and(|c| c.ctype() == "image" && c.subtype() == Some("png"))
        })
        .expect("an inline PNG part");
    let cid = img.content_id().expect("the image has a Content-ID");
    assert!(
        html.contains(&format!("cid:{cid}")),
        "HTML does not use cid:{cid}"
    );
    let png = img.contents();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(&png[12..16], b"IHDR");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    assert!(width >= 400, "chart width {width}");
    assert!(
        raw.data.windows(16).any(|w| w == b"multipart/relate"),
        "no multipart/related"
    );
}

#[test]
fn outage_loses_nothing_and_sends_each_message_once() {
    // A port with nothing listening: the server is down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = project(
        Project::new(),
        &format!(
            "  smtp:\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout_secs: 5\n"
        ),
    );
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let queued: BTreeMap<i64, String> = {
        let db = p.db();
        let mut st = db
            .prepare("SELECT id, message_id FROM outbox WHERE state = 'pending'")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert!(!queued.is_empty(), "nothing waits in the outbox");
    // `status` exits 1 while the daemon is not running; it still shows the outbox.
    let status = stdout(&p.run(&["status"]));
    assert!(
        status.contains(&format!("outbox: {} pending, 0 sent, 0 dead", queued.len())),
        "{status}"
    );

    // Hours later (the retry time has come) the server is back.
    let server = SmtpServer::start_on(port);
    p.db()
        .execute("UPDATE outbox SET next_attempt_at = 0", [])
        .unwrap();
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let got = server.messages();
    let mut ids: Vec<String> = got
        .iter()
        .map(|r| {
            let m = MessageParser::default().parse(&r.data).unwrap();
            format!("<{}>", m.message_id().unwrap())
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = queued.values().cloned().collect();
    want.sort();
    assert_eq!(
        ids, want,
        "each queued message arrives once, same Message-ID"
    );
    let left: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE state != 'sent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0);
}

#[test]
fn permanent_refusal_is_parked_dead_and_shown_by_status() {
    let (server, p) = tls_project();
    server
        .rejects
        .lock()
        .unwrap()
        .push("zhang.wei@example.com".into());
    let out = ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let count = |state: &str| -> i64 {
        p.db()
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = ?1",
                [state],
                |r| r.get(0),
            )
            .unwrap()
    };
    let (dead, sent) = (count("dead"), count("sent"));
    assert!(dead >= 1 && sent >= 1, "dead {dead}, sent {sent}\n{out}");
    assert_eq!(server.messages().len() as i64, sent);
    let err: String = p
        .db()
        .query_row(
            "SELECT last_error FROM outbox WHERE state = 'dead'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(err.contains("550"), "{err}");
    // Not retried, and `status` shows it.
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    assert_eq!(count("dead"), dead);
    let status = stdout(&p.run(&["status"]));
    assert!(status.contains(&format!("{dead} dead")), "{status}");
}

/// `mail test` with the password file at `mode`, expected to fail.
fn mail_test_failing(p: &Project, mode: u32) -> Output {
    let pw = p.path("smtp-password");
    std::fs::set_permissions(pw, std::fs::Permissions::from_mode(mode)).unwrap();
    let o = p.run(&["mail", "test", "--to", "ops@example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    o
}

#[test]
fn mail_test_reports_the_server_answer_or_a_hint() {
    let (server, p) = tls_project();
    let said = ok(p.run(&["mail", "test", "--to", "ops@example.com"]));
    assert!(said.contains("250"), "{said}");
    let got = server.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].to, ["ops@example.com"]);

    // A password file others can read is refused, naming the fix.
    let o = mail_test_failing(&p, 0o644);
    assert!(stderr(&o).contains("chmod 600"), "{}", show(&o));
    assert!(!stderr(&o).contains("s3cret"), "the password leaked");

    // Implicit TLS against a STARTTLS port: the handshake fails, the hint
    // names the modes and ports.
    p.edit_config("security: starttls", "security: tls");
    let o = mail_test_failing(&p, 0o600);
    assert!(stderr(&o).contains("security: starttls"), "{}", show(&o));

    // Nobody listening: the error says so.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let q = project(
        Project::new(),
        &format!(
            "  smtp:\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout_secs: 5\n"
        ),
    );
    let o = q.run(&["mail", "test", "--to", "ops@example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains("hint: nothing listens"), "{}", show(&o));
}

#[test]
fn preview_writes_html_text_and_png() {
    let p = project(Project::new(), "");
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let out = ok(p.run(&[
        "mail",
        "preview",
        "--rule",
        "lapsed_visits",
        "--account",
        "KH1001",
        "--out",
        "preview",
    ]));
    let files = p.files_under("preview");
    assert_eq!(files.len(), 3, "{out}");
    let html = std::fs::read_to_string(p.path("preview/lapsed_visits_KH1001.html")).unwrap();
    assert!(
        html.contains("src=\"lapsed_visits_KH1001-1.png\""),
        "{html}"
    );
    assert!(!html.contains(EVIL));
    let png = std::fs::read(p.path("preview/lapsed_visits_KH1001-1.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let text = std::fs::read_to_string(p.path("preview/lapsed_visits_KH1001.txt")).unwrap();
    assert!(text.starts_with("Subject: [kamwatch]"), "{text}");

    let o = p.run(&["mail", "preview", "--rule", "nope", "--account", "KH1001"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("kamwatch eval"), "{}", show(&o));
}

/// Digests in English, a user-edited subject template, and no more charts
/// than `charts_per_digest`.
#[test]
fn digest_in_english_with_user_template_and_capped_charts() {
    let p = project(Project::new(), "");
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg
        .replace("    enabled: false\n", "    enabled: true\n")
        .replace("  locale: zh-CN\n", "  locale: en\n")
        .replace("  charts_per_digest: 3\n", "  charts_per_digest: 1\n");
    assert!(cfg.contains("locale: en") && cfg.contains("charts_per_digest: 1"));
    std::fs::write(p.config(), cfg).unwrap();
    std::fs::create_dir_all(p.path("templates/en")).unwrap();
    std::fs::write(
        p.path("templates/en/digest_subject.txt"),
        "[kamwatch] Custom {{ as_of }}: {{ new }} new\n",
    )
    .unwrap();
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let files = p.files_under("var/mail");
    let mut digests = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        let m = MessageParser::default().parse(&data).unwrap();
        let text = body_text(&m);
        let images = m
            .parts
            .iter()
            .filter(|x| x.content_type().is_some_and(|c| c.ctype() == "image"))
            .count();
        if listed(&text).len() > 1 {
            digests += 1;
            let subject = m.subject().unwrap();
            assert!(
                subject.starts_with("[kamwatch] Custom 2026-10-31: "),
                "{subject}"
            );
            assert!(text.contains("Needs attention"), "{text}");
            assert_eq!(images, 1, "one chart per digest at most, here one");
        } else {
            assert!(m.subject().unwrap().starts_with("[kamwatch] "));
            assert!(images <= 1);
        }
    }
    assert!(digests > 0, "no digest among {files:?}");
}

/// A user template that does not parse is reported by `check`, naming the file.
#[test]
fn check_reports_a_broken_user_template() {
    let p = Project::new();
    std::fs::create_dir_all(p.path("templates/zh-CN")).unwrap();
    std::fs::write(
        p.path("templates/zh-CN/single.html"),
        "<p>{{ it.title </p>\n",
    )
    .unwrap();
    let o = p.run(&["check"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(stderr(&o).contains("single.html"), "{}", show(&o));
    std::fs::remove_file(p.path("templates/zh-CN/single.html")).unwrap();
    let out = ok(p.run(&["check"]));
    assert!(out.contains("mail templates"), "{out}");
}

/// One delivery pass sends all its messages over one SMTP connection.
#[test]
fn one_connection_per_delivery_pass() {
    let server = SmtpServer::start();
    let (port, connections) = counting_relay(server.port);
    let p = project(
        Project::new(),
        &format!(
            "  smtp:\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout_secs: 5\n"
        ),
    );
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let sent = server.messages().len();
    assert!(sent >= 3, "only {sent} messages");
    assert_eq!(
        connections.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "{sent} messages over more than one connection"
    );
}

//! Warning mails through a real SMTP server on 127.0.0.1: STARTTLS with a
//! self-signed certificate trusted through mail.smtp.ca_file, AUTH with a
//! password file, the MIME structure (text + HTML + inline chart), the
//! decoded subject and HTML escaping; an outage that loses nothing; the
//! `mail test` and `mail preview` tools.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt as _;
use std::process::Output;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// The (label, value) figures of a message's text part: one a line in a
/// single warning, "数据：a: 1；b: 2" / "Figures: a: 1; b: 2" in a digest.
fn figure_pairs(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        let (line, sep) = match (line.strip_prefix("数据："), line.strip_prefix("Figures: ")) {
            (Some(l), _) => (l, "；"),
            (_, Some(l)) => (l, "; "),
            _ => (line, "\n"),
        };
        for part in line.split(sep) {
            if let Some((k, v)) = part.split_once(": ") {
                out.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    out
}

/// Amounts in a text written without the currency: every number with
/// thousands separators (1,234) or in 万 must follow `symbol` at once.
fn bare_amounts(text: &str, symbol: char) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_ascii_digit() || ".,".contains(chars[i - 1])));
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && (chars[j].is_ascii_digit() || ".,".contains(chars[j])) {
            j += 1;
        }
        let mut token: String = chars[i..j].iter().collect();
        while token.ends_with([',', '.']) {
            token.pop();
        }
        let grouped = token
            .split(',')
            .skip(1)
            .any(|g| g.len() >= 3 && g[..3].bytes().all(|b| b.is_ascii_digit()));
        let wan = chars.get(j) == Some(&'万');
        if (grouped || wan) && (i == 0 || chars[i - 1] != symbol) {
            let from = i.saturating_sub(20);
            out.push(chars[from..(j + 1).min(chars.len())].iter().collect());
        }
        i = j;
    }
    out
}

/// The shipped config with single warnings for critical alerts, so a run
/// writes all three kinds of message: digests, single warnings and (with
/// `review --send`) the review.
fn all_kinds_of_message(cfg: &str) -> String {
    let out = cfg.replace(
        "    critical_immediately: false\n",
        "    critical_immediately: true\n",
    );
    assert!(
        out.contains("critical_immediately: true"),
        "the shipped config changed shape"
    );
    out
}

/// The kind of a message: "digest", "single" (one warning), "review",
/// "other" (the admin's).
fn kinds(m: &mail_parser::Message, file: &std::path::Path) -> &'static str {
    let name = file.file_name().unwrap().to_string_lossy();
    let subject = m.subject().unwrap_or("");
    if name.ends_with("_digest.eml") {
        "digest"
    } else if subject.contains("月度回顾") || subject.contains("review") {
        "review"
    } else if listed(&body_text(m)).len() == 1 {
        "single"
    } else {
        "other"
    }
}

/// In Chinese, the shipped rules' figures read as people write them: money
/// with ¥ (in 万 from 10,000 up), counts without decimals, changes with a
/// real minus and %, days with 天; in every message of a demo-like run
/// (digests, single warnings, the review) no amount goes without its ¥.
#[test]
fn chinese_mail_of_the_shipped_rules_writes_figures_by_kind() {
    // The check itself: bare amounts are found, written ones and counts not.
    let bare = bare_amounts("收入 12,345；¥1,234；−¥2.5万；3.5万；7 单；2026-10-31", '¥');
    assert_eq!(bare.len(), 2, "{bare:?}");
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    std::fs::write(p.config(), all_kinds_of_message(&cfg)).unwrap();
    let summary = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: p.path("staging"),
        seed: 11,
        accounts: 300,
        end: chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap(),
        months: 24,
    })
    .unwrap();
    let files: Vec<String> = summary
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    ok(p.run(&args));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    ok(p.run(&["review", "--as-of", "2026-10-31", "--send"]));
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut messages: BTreeMap<&str, usize> = BTreeMap::new();
    for f in p.files_under("var/mail") {
        let raw = std::fs::read(&f).unwrap();
        let m = MessageParser::default().parse(&raw).unwrap();
        *messages.entry(kinds(&m, &f)).or_default() += 1;
        let text = body_text(&m);
        let bare = bare_amounts(&text, '¥');
        assert!(
            bare.is_empty(),
            "{}: money without ¥: {bare:?}",
            f.display()
        );
        for (label, value) in figure_pairs(&text) {
            let (label, value) = (label.as_str(), value.as_str());
            let line = format!("{label}: {value}");
            let kind = if label.ends_with("收入") || label.ends_with("毛利") {
                assert!(value.starts_with('¥') || value.starts_with("−¥"), "{line}");
                "money"
            } else if label.ends_with("订单数") || label.ends_with("次数") {
                assert!(
                    value.parse::<u64>().is_ok(),
                    "a count as people write it: {line}"
                );
                "count"
            } else if label.starts_with("较") || label.ends_with("毛利率") {
                assert!(value.ends_with('%') && !value.starts_with('-'), "{line}");
                "percent"
            } else if label.starts_with("距上次") || label == "要求周期" {
                assert!(value.ends_with(" 天") || value == "从未", "{line}");
                "days"
            } else if label == "下滑" {
                assert!(value.ends_with(" 个百分点"), "{line}");
                "points"
            } else {
                continue;
            };
            *seen.entry(kind).or_default() += 1;
        }
    }
    for kind in ["money", "count", "percent", "days", "points"] {
        assert!(
            seen.contains_key(kind),
            "no {kind} figure in the mail: {seen:?}"
        );
    }
    for kind in ["digest", "single", "review"] {
        assert!(messages.contains_key(kind), "no {kind} among {messages:?}");
    }
}

/// With `mail.locale: en`, every warning the shipped rules write on
/// generated data says nothing in Chinese but the data itself (account,
/// people, region and product names): subjects, titles, figure labels,
/// actions, status and footers are English; money carries the currency and
/// percentages a real minus; counts and days have no decimals. Every message
/// of a demo-like run is read: digests, single warnings and the review.
#[test]
fn english_mail_of_the_shipped_rules_has_no_chinese_outside_the_data() {
    let p = Project::new();
    let cfg = std::fs::read_to_string(p.config()).unwrap();
    let cfg = cfg
        .replace("  locale: zh-CN\n", "  locale: en\n")
        .replace("  # admin: it@example.com", "  admin: it@example.com");
    assert!(
        cfg.contains("  locale: en\n") && cfg.contains("  admin: it@"),
        "the shipped config changed shape"
    );
    std::fs::write(p.config(), all_kinds_of_message(&cfg)).unwrap();
    // A rule that fails: the admin is told, in English too.
    std::fs::write(
        p.path("rules/broken.rhai"),
        "let x = account.no_such_field;\n",
    )
    .unwrap();
    let end = chrono::NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
    let summary = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: p.path("staging"),
        seed: 7,
        accounts: 300,
        end,
        months: 24,
    })
    .unwrap();
    // The data: every cell of the master and of the visits, the product names.
    let mut data: BTreeSet<String> = BTreeSet::new();
    for f in &summary.files {
        let mut r = csv::Reader::from_path(f).unwrap();
        let product = r.headers().unwrap().iter().position(|h| h == "产品名称");
        for rec in r.records() {
            let rec = rec.unwrap();
            match product {
                Some(i) => {
                    data.insert(rec[i].to_string());
                }
                None => data.extend(rec.iter().map(str::to_string)),
            }
        }
    }
    let mut data: Vec<String> = data.into_iter().filter(|d| !d.is_empty()).collect();
    data.sort_by_key(|d| std::cmp::Reverse(d.chars().count()));
    let files: Vec<String> = summary
        .files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["ingest"];
    args.extend(files.iter().map(String::as_str));
    ok(p.run(&args));
    let o = p.run(&["eval", "--as-of", "2026-10-31"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    ok(p.run(&["review", "--as-of", "2026-10-31", "--send"]));
    let mails = p.files_under("var/mail");
    let mut messages: BTreeMap<&str, usize> = BTreeMap::new();
    let mut admin = 0;
    let mut rules: BTreeSet<String> = BTreeSet::new();
    let mut figures = 0;
    for f in &mails {
        let raw = std::fs::read(f).unwrap();
        let m = MessageParser::default().parse(&raw).unwrap();
        let text = body_text(&m);
        *messages.entry(kinds(&m, f)).or_default() += 1;
        let bare = bare_amounts(&text, '¥');
        assert!(
            bare.is_empty(),
            "{}: money without ¥: {bare:?}",
            f.display()
        );
        let html = m.body_html(0).map(|t| t.into_owned()).unwrap_or_default();
        rules.extend(listed(&text).into_iter().map(|(r, _)| r));
        admin += usize::from(
            m.subject()
                .is_some_and(|s| s.starts_with("[kamwatch] system · ")),
        );
        for (what, body) in [
            ("subject", m.subject().unwrap_or("").to_string()),
            ("text", text.clone()),
            ("html", html),
        ] {
            let mut rest = body.clone();
            for d in &data {
                rest = rest.replace(d.as_str(), "");
            }
            let cjk: String = rest
                .chars()
                .filter(|c| kamwatch::format::is_cjk(*c))
                .collect();
            assert!(
                cjk.is_empty(),
                "{}: the {what} has Chinese outside the data: {cjk:?}\n{body}",
                f.display()
            );
        }
        for (label, value) in figure_pairs(&text) {
            let line = format!("{label}: {value}");
            let label = label.to_lowercase();
            if (label.starts_with("revenue") || label.starts_with("gross profit"))
                && !label.contains(" vs ")
            {
                figures += 1;
                assert!(value.starts_with('¥') || value.starts_with("−¥"), "{line}");
            }
            if (label.contains("orders") || label.starts_with("visits")) && !label.contains('%') {
                assert!(!value.contains('.'), "a count with decimals: {line}");
            }
            if let Some(days) = value.strip_suffix(" days").filter(|d| !d.contains(' ')) {
                assert!(
                    days.parse::<u64>().is_ok(),
                    "days as people write them: {line}"
                );
            }
            assert!(!value.starts_with('-'), "a hyphen for a minus: {line}");
        }
    }
    assert!(figures > 0, "no money figure in {} messages", mails.len());
    for kind in ["digest", "single", "review"] {
        assert!(messages.contains_key(kind), "no {kind} among {messages:?}");
    }
    assert_eq!(admin, 1, "one message to the admin about the broken rule");
    // JSON keeps the raw numbers and names their kinds.
    let o = p.run(&[
        "eval",
        "--as-of",
        "2026-10-31",
        "--dry-run",
        "--format",
        "json",
    ]);
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = lines
        .iter()
        .find(|v| v["rule"] == "declining_orders")
        .expect("a declining_orders finding");
    let revenue = "Revenue, last 90 days";
    assert!(d["figures"][revenue].is_number(), "{d}");
    assert_eq!(d["units"][revenue], "money", "{d}");
    assert!(d["figures"]["Orders, last 90 days"].is_u64(), "{d}");
    assert_eq!(d["units"]["Orders, last 90 days"], "count", "{d}");
    assert_eq!(d["units"]["vs previous 90 days"], "percent", "{d}");
    for r in ["declining_orders", "margin_slip", "lapsed_visits"] {
        assert!(rules.contains(r), "no {r} warning among {rules:?}");
    }
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
    // In the domain of mail.from (kamwatch@localhost in the test config).
    assert!(m.message_id().is_some_and(|id| id.ends_with("@localhost")));

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
        .replace("  charts_per_digest: 50\n", "  charts_per_digest: 1\n");
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

// ---------------------------------------------------------------------
// Servers that misbehave: a raw TCP listener on 127.0.0.1 that speaks just
// enough SMTP (or none at all), written here so each bad habit is exact.

/// How a hand-written server misbehaves.
#[derive(Clone)]
enum Mode {
    /// Accepts the connection and never says a word.
    Silent,
    /// Sends its greeting one byte at a time, a byte every `gap`, forever.
    Drip(Duration),
    /// Speaks SMTP, and refuses these recipients with 550 at RCPT.
    Refuse(Vec<String>),
    /// Speaks SMTP and takes messages up to `limit` bytes: SIZE in EHLO
    /// when `advertise`, and 552 at MAIL FROM or after DATA for larger ones.
    Size { limit: usize, advertise: bool },
    /// Speaks SMTP, and hangs up without a word after each message.
    HangUpAfterEach,
}

struct Raw {
    port: u16,
    got: Arc<Mutex<Vec<Received>>>,
    /// Connections accepted, and those still open.
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
}

impl Raw {
    fn start(mode: Mode) -> Raw {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let raw = Raw {
            port,
            got: Arc::default(),
            connections: Arc::default(),
            open: Arc::default(),
        };
        let (got, connections, open) = (raw.got.clone(), raw.connections.clone(), raw.open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                connections.fetch_add(1, SeqCst);
                open.fetch_add(1, SeqCst);
                let (mode, got, open) = (mode.clone(), got.clone(), open.clone());
                std::thread::spawn(move || {
                    serve_raw(stream, &mode, &got);
                    open.fetch_sub(1, SeqCst);
                });
            }
        });
        raw
    }

    fn messages(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
}

fn serve_raw(mut s: std::net::TcpStream, mode: &Mode, got: &Mutex<Vec<Received>>) {
    use std::io::{BufRead as _, Read as _, Write as _};
    match mode {
        Mode::Silent => {
            // Until the client hangs up.
            let mut buf = [0u8; 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        Mode::Drip(gap) => {
            for b in b"220 tarpit.local ESMTP, slowly".iter().cycle() {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(*gap);
            }
            return;
        }
        _ => {}
    }
    let limit = match mode {
        Mode::Size { limit, .. } => Some(*limit),
        _ => None,
    };
    let mut r = std::io::BufReader::new(s.try_clone().unwrap());
    let say = |s: &mut std::net::TcpStream, t: &str| s.write_all(t.as_bytes()).is_ok();
    if !say(&mut s, "220 raw.local ESMTP\r\n") {
        return;
    }
    let (mut from, mut to) = (String::new(), Vec::<String>::new());
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        let reply = if upper.starts_with("EHLO") {
            match mode {
                Mode::Size {
                    limit,
                    advertise: true,
                } => format!("250-raw.local\r\n250-SIZE {limit}\r\n250 8BITMIME\r\n"),
                _ => "250-raw.local\r\n250 8BITMIME\r\n".into(),
            }
        } else if upper.starts_with("MAIL FROM:") {
            let declared = upper
                .split_once("SIZE=")
                .and_then(|(_, n)| n.trim().parse::<usize>().ok());
            if declared.zip(limit).is_some_and(|(d, l)| d > l) {
                "552 5.3.4 message size exceeds fixed limit\r\n".into()
            } else {
                from = cmd[10..].trim_matches(['<', '>', ' ']).to_string();
                to.clear();
                "250 OK\r\n".into()
            }
        } else if upper.starts_with("RCPT TO:") {
            let addr = cmd[8..].trim_matches(['<', '>', ' ']).to_string();
            match mode {
                Mode::Refuse(bad) if bad.contains(&addr) => {
                    format!("550 5.1.1 <{addr}>: Recipient address rejected: User unknown\r\n")
                }
                _ => {
                    to.push(addr);
                    "250 OK\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if !say(&mut s, "354 go ahead\r\n") {
                return;
            }
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l).unwrap_or(0) == 0 {
                    return;
                }
                if l == b".\r\n" {
                    break;
                }
                data.extend_from_slice(&l);
            }
            if limit.is_some_and(|l| data.len() > l) {
                "552 5.3.4 Error: message file too big\r\n".into()
            } else {
                got.lock().unwrap().push(Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                    at: std::time::Instant::now(),
                });
                if matches!(mode, Mode::HangUpAfterEach) {
                    let _ = say(&mut s, "250 2.0.0 queued\r\n");
                    return;
                }
                "250 2.0.0 queued\r\n".into()
            }
        } else if upper == "QUIT" {
            let _ = say(&mut s, "221 bye\r\n");
            return;
        } else if upper == "RSET" || upper == "NOOP" {
            "250 OK\r\n".into()
        } else {
            "500 5.5.2 what?\r\n".into()
        };
        if !say(&mut s, &reply) {
            return;
        }
    }
}

fn smtp_to(port: u16, timeout: u64, deadline: u64) -> String {
    format!(
        "  smtp:\n    host: 127.0.0.1\n    port: {port}\n    security: none\n    timeout_secs: {timeout}\n    message_deadline_secs: {deadline}\n"
    )
}

fn outbox_rows(p: &Project) -> Vec<(i64, String, i64, Option<String>, String)> {
    let db = p.db();
    let mut st = db
        .prepare("SELECT id, state, attempts, last_error, recipients FROM outbox ORDER BY id")
        .unwrap();
    st.query_map([], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// A server that never answers and one that drips a byte every 300 ms:
/// each message gives up by its deadline with an error naming the server
/// and the setting, the pass gives up on the server after two timeouts
/// (the rest untouched), and nothing is lost.
#[test]
fn silent_and_dripping_servers_time_out_and_are_named() {
    for (mode, want) in [
        (Mode::Silent, "no answer within 1 s (timeout_secs)"),
        (
            Mode::Drip(Duration::from_millis(300)),
            "the message was not through within 2 s (message_deadline_secs)",
        ),
    ] {
        let server = Raw::start(mode);
        let p = project(Project::new(), &smtp_to(server.port, 1, 2));
        let out = ok(p.run(&["eval", "--as-of", "2026-10-31"]));
        let rows = outbox_rows(&p);
        assert!(
            rows.len() >= 3,
            "too few messages to see the pass give up\n{out}"
        );
        assert!(rows.iter().all(|r| r.1 == "pending"), "{rows:?}");
        let tried: Vec<_> = rows.iter().filter(|r| r.2 > 0).collect();
        assert_eq!(
            tried.len(),
            2,
            "the pass goes on after two timeouts: {rows:?}"
        );
        for r in tried {
            assert_eq!(
                r.3.as_deref(),
                Some(format!("smtp 127.0.0.1:{}: {want}", server.port).as_str())
            );
        }
        assert_eq!(
            server.connections.load(SeqCst),
            2,
            "one connection per timed-out message"
        );
    }
}

/// A server that hangs up after each message (idle or per-connection
/// limits): the next message goes on a fresh connection, nothing waits.
#[test]
fn a_server_that_hangs_up_between_messages_gets_each_on_a_new_connection() {
    let server = Raw::start(Mode::HangUpAfterEach);
    let p = project(Project::new(), &smtp_to(server.port, 5, 30));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let rows = outbox_rows(&p);
    assert!(rows.len() >= 3, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "sent" && r.2 == 1), "{rows:?}");
    assert_eq!(server.messages().len(), rows.len());
    assert_eq!(server.connections.load(SeqCst), rows.len());
}

/// A refused login says so, and leaves the messages pending (not dead).
#[test]
fn authentication_failure_says_so() {
    let (server, p) = tls_project();
    std::fs::write(p.path("smtp-password"), "wrong password\n").unwrap();
    let o = p.run(&["mail", "test", "--to", "ops@example.com"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let want = format!("smtp 127.0.0.1:{}: authentication failed", server.port);
    assert!(stderr(&o).contains(&want), "{}", show(&o));
    assert!(
        !stderr(&o).contains("wrong password"),
        "the password leaked"
    );
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let rows = outbox_rows(&p);
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r.1 == "pending"), "{rows:?}");
    assert!(
        rows.iter()
            .any(|r| r.3.as_deref().is_some_and(|e| e.starts_with(&want))),
        "{rows:?}"
    );
}

/// A 550 for one of two recipients: the other gets the message, the
/// refused one is parked with the server's reply, the admin is told once
/// however many messages it hit, and `status` shows it.
#[test]
fn a_refused_recipient_does_not_sink_the_others() {
    let bad = "refused@example.com";
    let server = Raw::start(Mode::Refuse(vec![bad.into()]));
    let p = Project::new();
    p.edit_config("  # admin: it@example.com\n", "  admin: it@example.com\n");
    p.edit_config(
        "\nalerts:\n",
        &format!("\nrule_settings:\n  lapsed_visits:\n    recipients: [{bad}]\nalerts:\n"),
    );
    let p = project(p, &smtp_to(server.port, 5, 30));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let rows = outbox_rows(&p);
    let hit: Vec<_> = rows.iter().filter(|r| r.4.contains(bad)).collect();
    assert!(
        hit.len() >= 2,
        "the refused address is in fewer than two messages: {rows:?}"
    );
    for r in &hit {
        assert_eq!(r.1, "sent", "{r:?}");
        let to: Vec<serde_json::Value> = serde_json::from_str(&r.4).unwrap();
        let refused = to.iter().find(|x| x["email"] == bad).unwrap();
        assert_eq!(refused["state"], "refused");
        assert!(
            refused["reply"].as_str().unwrap().starts_with("550 5.1.1"),
            "{refused}"
        );
        let owner = to.iter().find(|x| x["email"] != bad).unwrap();
        assert_eq!(owner["state"], "sent");
    }
    let got = server.messages();
    assert!(got.iter().all(|m| !m.to.iter().any(|t| t == bad)));
    assert!(got.len() >= hit.len());
    // Once, however many messages refused it; a second pass adds nothing.
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let admin: Vec<String> = p
        .db()
        .prepare("SELECT body_text FROM outbox WHERE recipients LIKE '%it@example.com%' AND body_text LIKE '%' || ?1 || '%'")
        .unwrap()
        .query_map([bad], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(admin.len(), 1, "{admin:?}");
    assert!(admin[0].contains("550 5.1.1"), "{}", admin[0]);
    let status = stdout(&p.run(&["status"]));
    assert!(
        status.contains(&format!(
            "recipient refused: {bad} in {} message(s)",
            hit.len()
        )),
        "{status}"
    );
    let json = stdout(&p.run(&["status", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(v["outbox"]["refused"][0]["email"], bad, "{json}");
}

/// An owner email that is no address (stored before ingest checked them,
/// or already in a queued message) stops nothing: the evaluation runs, the
/// bad address alone is skipped, the others get the mail, the admin is told.
#[test]
fn a_malformed_address_is_skipped_and_the_rest_delivered() {
    let server = Raw::start(Mode::Refuse(Vec::new()));
    let p = Project::new();
    p.edit_config("  # admin: it@example.com\n", "  admin: it@example.com\n");
    let p = project(p, &smtp_to(server.port, 5, 30));
    let bad = "a@x.com; b@y.com";
    p.db()
        .execute(
            "UPDATE accounts SET owner_email = ?1 WHERE id = 'KH1001'",
            [bad],
        )
        .unwrap();
    let out = ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    assert!(out.contains("0 dead"), "{out}");
    let evaluations: i64 = p
        .db()
        .query_row("SELECT COUNT(*) FROM evaluations", [], |r| r.get(0))
        .unwrap();
    assert_eq!(evaluations, 1);
    // KH1001's warnings still went out (to the admin, as nobody else is
    // left), and the admin was told which address to fix.
    let got = server.messages();
    let kh1001: Vec<&Received> = got
        .iter()
        .filter(|m| {
            let parsed = MessageParser::default().parse(&m.data).unwrap();
            listed(&body_text(&parsed))
                .iter()
                .any(|(_, a)| a == "KH1001")
        })
        .collect();
    assert!(!kh1001.is_empty(), "KH1001's warnings were lost");
    assert!(
        kh1001.iter().all(|m| m.to == ["it@example.com"]),
        "{kh1001:?}"
    );
    let told: i64 = p
        .db()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE recipients LIKE '%it@example.com%' AND body_text LIKE '%KH1001: \"a@x.com; b@y.com\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(told, 1);

    // A queued message that already carries a bad address.
    let id: i64 = p
        .db()
        .query_row(
            "SELECT MIN(id) FROM outbox WHERE rule != 'system'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    p.db()
        .execute(
            "UPDATE outbox SET state = 'pending', next_attempt_at = 0,
               recipients = json_array(
                   json_object('name', '', 'email', json_extract(recipients, '$[0].email')),
                   json_object('name', '', 'email', ?2))
             WHERE id = ?1",
            rusqlite::params![id, bad],
        )
        .unwrap();
    let before = server.messages().len();
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let (state, to): (String, String) = p
        .db()
        .query_row(
            "SELECT state, recipients FROM outbox WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "sent", "{to}");
    assert!(to.contains("\"state\":\"invalid\""), "{to}");
    assert!(
        server.messages().len() > before,
        "the good recipient got nothing"
    );
}

/// The (recipient, rule, account) triples the notices were routed to, and
/// those that reached the server: no warning may be dropped.
fn routed(p: &Project) -> BTreeSet<(String, String, String)> {
    let db = p.db();
    let mut st = db
        .prepare("SELECT rule, account_id, recipients FROM notifications WHERE state = 'mailed'")
        .unwrap();
    let mut out = BTreeSet::new();
    for row in st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .unwrap()
    {
        let (rule, account, to) = row.unwrap();
        let to: Vec<serde_json::Value> = serde_json::from_str(&to).unwrap();
        for t in to {
            out.insert((
                t["email"].as_str().unwrap().to_string(),
                rule.clone(),
                account.clone(),
            ));
        }
    }
    out
}

fn arrived(got: &[Received]) -> BTreeSet<(String, String, String)> {
    let mut out = BTreeSet::new();
    for m in got {
        let parsed = MessageParser::default().parse(&m.data).unwrap();
        for (rule, account) in listed(&body_text(&parsed)) {
            for t in &m.to {
                out.insert((t.clone(), rule.clone(), account.clone()));
            }
        }
    }
    out
}

/// Digests larger than the server takes — announced as SIZE, or only
/// answered with 552 — are sent as smaller messages without charts; and a
/// digest over `mail.max_message_kb` loses its charts, then goes in parts
/// "(1/n)". Every warning reaches every recipient; nothing is dead.
#[test]
fn messages_too_large_are_split_and_no_warning_is_dropped() {
    let limit = 20_000;
    for advertise in [true, false] {
        let server = Raw::start(Mode::Size { limit, advertise });
        let p = project(Project::new(), &smtp_to(server.port, 5, 30));
        p.edit_config(
            "    enabled: false\n    # Critical",
            "    enabled: true\n    # Critical",
        );
        ok(p.run(&["eval", "--as-of", "2026-10-31"]));
        let rows = outbox_rows(&p);
        // A message rewritten smaller was tried twice.
        assert!(
            rows.iter().any(|r| r.2 >= 2),
            "nothing was too large: {rows:?}"
        );
        assert!(rows.iter().all(|r| r.1 == "sent"), "{rows:?}");
        let got = server.messages();
        assert!(
            got.iter().all(|m| m.data.len() <= limit),
            "advertise {advertise}"
        );
        let want = routed(&p);
        assert!(!want.is_empty());
        assert_eq!(arrived(&got), want, "advertise {advertise}");
    }

    // The configured maximum, at release: as .eml files.
    let p = project(Project::new(), "");
    p.edit_config(
        "    enabled: false\n    # Critical",
        "    enabled: true\n    # Critical",
    );
    p.edit_config("  max_message_kb: 10240\n", "  max_message_kb: 9\n");
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let mut got = Vec::new();
    let mut parts = 0;
    for f in p.files_under("var/mail") {
        let data = std::fs::read(&f).unwrap();
        assert!(
            data.len() <= 9 * 1024,
            "{} is {} bytes",
            f.display(),
            data.len()
        );
        let m = MessageParser::default().parse(&data).unwrap();
        if m.subject()
            .is_some_and(|s| s.ends_with("(1/2)") || s.contains(" (1/"))
        {
            parts += 1;
        }
        let to = m
            .to()
            .unwrap()
            .iter()
            .map(|a| a.address().unwrap().to_string())
            .collect();
        got.push(Received {
            from: String::new(),
            to,
            data,
            at: std::time::Instant::now(),
        });
    }
    assert!(parts > 0, "no digest was split into parts");
    assert_eq!(arrived(&got), routed(&p));
}

fn count(p: &Project, sql: &str) -> i64 {
    p.db().query_row(sql, [], |r| r.get(0)).unwrap_or(0)
}

/// The daemon with a server that drips a byte every 500 ms (so one
/// message would hold the connection for its whole 300 s deadline): a file
/// dropped meanwhile is ingested and evaluated while the server still holds
/// the connection; SIGTERM ends the daemon at once, leaving the messages
/// pending; a working server later gets each of them exactly once.
#[test]
fn a_tarpit_holds_up_neither_ingest_nor_evaluation_nor_sigterm() {
    let tarpit = Raw::start(Mode::Drip(Duration::from_millis(500)));
    // Queue the mail while the server is down, so it waits in the outbox.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = project(Project::new(), &smtp_to(down, 5, 300));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    let queued = count(&p, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'");
    assert!(queued > 0);
    p.db()
        .execute("UPDATE outbox SET next_attempt_at = 0", [])
        .unwrap();
    p.edit_config(&format!("port: {down}"), &format!("port: {}", tarpit.port));

    let d = Daemon::start(&p);
    wait_for(30, "the daemon's delivery caught in the tarpit", || {
        (tarpit.open.load(SeqCst) >= 1).then_some(())
    });
    let evaluations = count(&p, "SELECT COUNT(*) FROM evaluations");
    let name = "拜访记录_202611.csv";
    let staging = p.path("staging");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(
        staging.join(name),
        "拜访日期,客户编号,拜访人,职务,拜访类型,备注\n2026-11-02,KH1001,张伟,业务员,上门拜访,\n",
    )
    .unwrap();
    let dropped = std::time::Instant::now();
    std::fs::rename(staging.join(name), p.path("inbox").join(name)).unwrap();
    wait_for(60, "the dropped file ingested and evaluated", || {
        (count(
            &p,
            &format!(
                "SELECT COUNT(*) FROM ledger WHERE outcome = 'ingested' AND file_name = '{name}'"
            ),
        ) == 1
            && count(&p, "SELECT COUNT(*) FROM evaluations") > evaluations)
            .then_some(())
    });
    let took = dropped.elapsed();
    assert!(
        tarpit.open.load(SeqCst) >= 1,
        "the tarpit let go before the evaluation, which proves nothing"
    );
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM outbox WHERE state = 'sent'"),
        0
    );

    let asked = std::time::Instant::now();
    let status = d.stop();
    let stopped = asked.elapsed();
    assert!(status.success(), "{status:?}\n{}", Daemon::log(&p));
    eprintln!("during the tarpit: drop to evaluation {took:?}; SIGTERM to exit {stopped:?}");
    let pending = count(&p, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'");
    assert!(pending >= queued, "{pending} pending of {queued} queued");
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM outbox WHERE state != 'pending'"),
        0
    );

    // Later, a working server: every message once, with its Message-ID.
    let good = SmtpServer::start();
    p.edit_config(
        &format!("port: {}", tarpit.port),
        &format!("port: {}", good.port),
    );
    p.db()
        .execute("UPDATE outbox SET next_attempt_at = 0", [])
        .unwrap();
    let d = Daemon::start(&p);
    wait_for(60, "the outbox drained", || {
        (count(&p, "SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0).then_some(())
    });
    assert!(d.stop().success());
    let mut at_server: BTreeMap<String, usize> = BTreeMap::new();
    for m in good.messages() {
        let parsed = MessageParser::default().parse(&m.data).unwrap();
        *at_server
            .entry(format!("<{}>", parsed.message_id().unwrap()))
            .or_default() += 1;
    }
    let ids: BTreeSet<String> = p
        .db()
        .prepare("SELECT message_id FROM outbox")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(at_server.keys().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(at_server.values().all(|n| *n == 1), "{at_server:?}");
}

/// The daemon against a server that never answers: two messages time out,
/// then the server is backed off as a whole (logged), the rest of the
/// outbox untouched and pending.
#[test]
fn the_daemon_backs_off_a_server_that_keeps_timing_out() {
    let server = Raw::start(Mode::Silent);
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = project(Project::new(), &smtp_to(down, 1, 2));
    ok(p.run(&["eval", "--as-of", "2026-10-31"]));
    p.db()
        .execute("UPDATE outbox SET next_attempt_at = 0, attempts = 0", [])
        .unwrap();
    p.edit_config(&format!("port: {down}"), &format!("port: {}", server.port));
    let d = Daemon::start(&p);
    wait_for(60, "the server backed off", || {
        Daemon::log(&p)
            .contains("the mail server is backed off: no delivery for 30 s")
            .then_some(())
    });
    assert_eq!(server.connections.load(SeqCst), 2);
    let rows = outbox_rows(&p);
    assert!(rows.len() > 2, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.2 > 0).count(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.1 == "pending"));
    assert!(d.stop().success());
}

/// The items of a digest's text part: the lines of each "N. [..." block.
fn items_of(text: &str) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let starts = line
            .split_once(". [")
            .is_some_and(|(n, _)| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if starts {
            out.push(vec![line.to_string()]);
            inside = true;
        } else if line.starts_with("-- ") || line.starts_with("== ") {
            inside = false;
        } else if inside && let Some(last) = out.last_mut() {
            last.push(line.trim().to_string());
        }
    }
    out
}

/// Digests over real SMTP are addressed to people: greeted by the name the
/// master gives owners and managers, a footer with who sent it, why the
/// reader gets each item, the exact command that silences it (which works
/// when run) and the admin to write to; `Auto-Submitted`, a Date in
/// `schedule.timezone`, subjects without blanks at their ends. Each open
/// item has its own chart, with a caption, and no picture twice in one
/// message.
#[test]
fn digests_greet_people_explain_themselves_and_chart_each_item() {
    let server = SmtpServer::start();
    let p = Project::with_smtp(server.port);
    p.edit_config(
        "  dir: var/mail\n",
        "  dir: var/mail\n  admin: it@example.com\n",
    );
    p.with_generated_history(120, 7);
    ok(p.run(&["eval", "--as-of", "2026-11-28"]));
    let got = server.messages();
    assert!(got.len() >= 3, "only {} messages", got.len());
    let managers = ["孙涛", "马丽", "陈静"];
    let mut manager_mails = 0;
    let mut charts = 0;
    let mut silence: Option<String> = None;
    for raw in &got {
        let m = MessageParser::default().parse(&raw.data).unwrap();
        let head = String::from_utf8_lossy(
            &raw.data[..raw.data.windows(4).position(|w| w == b"\r\n\r\n").unwrap()],
        )
        .into_owned();
        assert!(
            head.contains("\r\nAuto-Submitted: auto-generated\r\n"),
            "{head}"
        );
        let date = head
            .lines()
            .find_map(|l| l.strip_prefix("Date: "))
            .expect("a Date header");
        assert!(
            date.ends_with(" +0800"),
            "Date not in Asia/Shanghai: {date}"
        );
        let subject = m.subject().unwrap();
        assert_eq!(subject, subject.trim(), "blanks at the ends of {subject:?}");
        if subject.starts_with("[kamwatch] 系统 · ") {
            continue; // kamwatch's own news to the admin
        }
        let to = m.to().unwrap().first().unwrap();
        let text = body_text(&m);
        let first = text.lines().next().unwrap();
        assert!(!first.contains('@'), "{first}");
        let admin = to.address() == Some("it@example.com");
        let name = if admin {
            // Accounts without an owner email: nobody's name to give.
            assert!(first.starts_with("您好"), "{first}");
            ""
        } else {
            let name = to.name().expect("the recipient's name from the master");
            assert!(!name.contains('@'), "{name}");
            assert!(
                first.starts_with(&format!("{name}，您好")),
                "greeting {first:?} for {name}"
            );
            name
        };
        assert!(
            text.contains("本邮件由重点客户预警服务 kamwatch 自动发送"),
            "{text}"
        );
        assert!(text.contains("请写信给管理员 it@example.com"), "{text}");
        let is_manager = managers.contains(&name);
        manager_mails += usize::from(is_manager);
        let mut items = items_of(&text);
        if items.is_empty() {
            // A single warning: the whole text is its one item.
            items.push(text.lines().map(|l| l.trim().to_string()).collect());
        }
        let html = m.body_html(0).unwrap().into_owned();
        let images: Vec<&mail_parser::MessagePart> = m
            .parts
            .iter()
            .filter(|x| x.content_type().is_some_and(|c| c.ctype() == "image"))
            .collect();
        let pictures: BTreeSet<&[u8]> = images.iter().map(|i| i.contents()).collect();
        assert_eq!(
            pictures.len(),
            images.len(),
            "the same picture twice in one message"
        );
        for img in &images {
            assert!(html.contains(&format!("cid:{}", img.content_id().unwrap())));
        }
        charts += images.len();
        for it in &items {
            let line = |prefix: &str| {
                it.iter()
                    .find_map(|l| l.strip_prefix(prefix))
                    .unwrap_or_else(|| panic!("no {prefix} in {it:?}"))
                    .to_string()
            };
            let (rule, account) = listed(&it.join("\n")).pop().expect("the rule line");
            let reason = line("收件原因：");
            if admin {
                assert!(reason.contains("预警转给管理员（mail.admin）"), "{reason}");
            } else if is_manager {
                assert!(
                    reason.starts_with("您是该客户负责人") && reason.ends_with("的主管"),
                    "{reason}"
                );
            } else {
                assert_eq!(reason, "您是该客户的负责人", "to {to:?}");
            }
            let cmd = line("暂停此预警：");
            // The alert's key, when it has one, between rule and account.
            let rest = cmd
                .split_once(&format!(" --rule={rule} "))
                .map(|(_, r)| r)
                .unwrap_or_else(|| panic!("{cmd}"));
            let rest = match rest.strip_prefix("--key=") {
                Some(r) => r.split_once(' ').map_or("", |(_, r)| r),
                None => rest,
            };
            assert!(
                cmd.starts_with("kamwatch silence add --config=")
                    && rest.starts_with(&format!("--account={account} --until=2026-12-28 ")),
                "{cmd}"
            );
            assert!(
                line("图表：").len() > 10,
                "each open item has a chart or points to one"
            );
            silence.get_or_insert(cmd);
        }
    }
    assert!(
        manager_mails > 0,
        "no manager got a digest (critical alerts)"
    );
    assert!(
        charts > got.len(),
        "{charts} charts in {} messages",
        got.len()
    );

    // The command is exact: run as written, it silences that alert.
    let cmd = silence.unwrap();
    let rest = cmd.strip_prefix("kamwatch ").unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("\"$KAMWATCH\" {rest}"))
        .env("KAMWATCH", env!("CARGO_BIN_EXE_kamwatch"))
        .env("KAMWATCH_NOW", NOW)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{cmd}: {}", show(&o));
    let list = ok(p.run(&["silence", "list"]));
    let account = cmd
        .split(" --account=")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    assert!(list.contains(account), "{list}");
}

/// .eml files are named by outbox id, rule and account, without a
/// dangling underscore for a digest (which has no one account); English
/// mail greets in English.
#[test]
fn eml_names_have_no_dangling_underscore_and_english_greets_in_english() {
    let p = Project::new();
    p.edit_config("  locale: zh-CN\n", "  locale: en\n");
    p.with_generated_history(60, 3);
    ok(p.run(&["eval", "--as-of", "2026-11-28"]));
    let files = p.files_under("var/mail");
    assert!(!files.is_empty());
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(
            name.ends_with(".eml") && !name.ends_with("_.eml") && !name.contains("__"),
            "{name}"
        );
        let m_bytes = std::fs::read(f).unwrap();
        let m = MessageParser::default().parse(&m_bytes).unwrap();
        let text = body_text(&m);
        let first = text.lines().next().unwrap();
        assert!(first.starts_with("Dear "), "{first}");
        assert!(text.contains("Why you get this: you "), "{text}");
        assert!(
            text.contains("To silence this alert: kamwatch silence add"),
            "{text}"
        );
        assert!(text.contains("Sent automatically by kamwatch"), "{text}");
    }
    assert!(
        files
            .iter()
            .any(|f| f.to_str().unwrap().ends_with("_digest.eml")),
        "{files:?}"
    );
}

/// An account id of 300 characters (an ERP that puts a description in the
/// id column) still gives each message its .eml file: the name keeps a
/// bounded part of the id, where it once exceeded the file system's 255
/// bytes and left the message pending under an "smtp" error.
#[test]
fn a_very_long_account_id_still_gets_its_eml_file() {
    let p = Project::new();
    p.with_generated_history(60, 3);
    let long = "x".repeat(300);
    let db = p.db();
    for table in ["accounts", "orders", "visits", "receivables", "inventory"] {
        let column = if table == "accounts" {
            "id"
        } else {
            "account_id"
        };
        db.execute(
            &format!("UPDATE {table} SET {column} = {column} || ?1 WHERE {column} <> ''"),
            [&long],
        )
        .unwrap();
    }
    drop(db);
    ok(p.run(&["eval", "--as-of", "2026-11-28"]));
    let files = p.files_under("var/mail");
    let singles: Vec<_> = files
        .iter()
        .filter(|f| !f.to_str().unwrap().ends_with("_digest.eml"))
        .collect();
    assert!(!singles.is_empty(), "{files:?}");
    for f in &files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.len() <= 140 && name.ends_with(".eml"), "{name}");
    }
    assert_eq!(
        count(&p, "SELECT COUNT(*) FROM outbox WHERE state <> 'sent'"),
        0,
        "every message was written to the folder"
    );
    assert_eq!(count(&p, "SELECT COUNT(*) FROM outbox"), files.len() as i64);
}

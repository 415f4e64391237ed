//! Latency: from a small export file becoming complete in the inbox to the
//! SMTP server accepting the warning it causes. The quality bar is one
//! second. Runs the release `kamwatch run` as a process against a real SMTP
//! server on 127.0.0.1, over a book of 300 generated accounts.
//!
//!     cargo bench --bench latency [-- DROPS]
//!
//! Prints every drop, then the median and the worst against the bar.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::*;

fn main() {
    let drops: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(20);
    let smtp = SmtpServer::start();
    let p = Project::with_smtp(smtp.port);
    // A rule that fires for an account that ordered today: each drop of one
    // order line starts exactly one alert.
    std::fs::write(
        p.path("rules/ordered_today.rhai"),
        "if account.orders(1) > 0 { alert(#{ severity: \"info\", title: \"ordered today\" }); }\n",
    )
    .unwrap();
    let today = chrono::Local::now().date_naive();
    let s = kamwatch::generate::generate(&kamwatch::generate::GenerateOptions {
        out_dir: p.path("staging"),
        seed: 1,
        accounts: 300,
        end: today.pred_opt().unwrap(),
        months: 24,
    })
    .unwrap();
    let master = std::fs::read_to_string(&s.files[0]).unwrap();
    let mut daemon = Daemon::start(&p);
    for f in &s.files {
        std::fs::rename(f, p.path("inbox").join(f.file_name().unwrap())).unwrap();
    }
    let db = p.path("var/kamwatch.db");
    let count = |sql: &str| -> i64 {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
            .unwrap_or(-1)
    };
    wait_for(300, "the history ingested and its warnings sent", || {
        (count("SELECT COUNT(*) FROM evaluations") >= 1
            && count("SELECT COUNT(*) FROM outbox WHERE state = 'pending'") == 0
            && smtp.messages().len() as i64 == count("SELECT COUNT(*) FROM outbox"))
        .then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));

    // Accounts whose owner has an email (the master's fifth column).
    let ids: Vec<&str> = master
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|f| f.len() > 4 && !f[4].is_empty())
        .map(|f| f[0])
        .take(drops)
        .collect();
    let mut latencies = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let before = smtp.messages().len();
        let name = format!("销售明细_bench{i:03}.csv");
        let tmp = p.path("staging").join(&name);
        std::fs::write(
            &tmp,
            format!(
                "订单编号,行号,客户编号,客户名称,订单日期,产品编号,产品名称,数量,单价,金额,成本\nBENCH{i},1,{id},x,{today},SP-001,x,1,10,10,8\n"
            ),
        )
        .unwrap();
        let t0 = Instant::now();
        std::fs::rename(&tmp, p.path("inbox").join(&name)).unwrap();
        let mut got = None;
        while t0.elapsed() < Duration::from_secs(30) {
            let m = smtp.messages();
            if m.len() > before {
                got = Some(m[before].at);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let Some(got) = got else {
            panic!(
                "no warning at the SMTP server 30 s after drop {i}; daemon log:\n{}",
                Daemon::log(&p)
            );
        };
        let ms = got.duration_since(t0).as_secs_f64() * 1000.0;
        println!("drop {i:>3}: {ms:>7.1} ms");
        latencies.push(ms);
        std::thread::sleep(Duration::from_millis(300));
    }
    latencies.sort_by(f64::total_cmp);
    let median = latencies[latencies.len() / 2];
    let worst = latencies[latencies.len() - 1];
    println!(
        "file complete -> SMTP accepted, {} drops: median {median:.0} ms, worst {worst:.0} ms; bar 1000 ms: median at {:.2}x, worst at {:.2}x of the bar",
        latencies.len(),
        median / 1000.0,
        worst / 1000.0
    );
    let _ = daemon.0.take().map(|mut c| {
        let _ = c.kill();
        c.wait()
    });
}

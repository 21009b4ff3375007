//! The web console's server time per page on a large study: 2,000
//! participants with a baseline and a follow-up MMTT each, about 10,000
//! open mismatches. The study is built by pushing generated HL7 ORU^R01
//! through `ingest_batch` into a real SQLite file (so the mismatches are the
//! pipeline's own), the accounts are made and the console is served by the
//! release binary (`labfeed user add`, `labfeed serve` on 127.0.0.1:0), and
//! each page is fetched over loopback HTTP/1.1, signed in. A page's time is
//! from the request's first byte to the response's last (loopback adds about
//! 0.1 ms); the table gives the median and the slowest of 7 runs (after a
//! warm-up). The mismatch queue is timed at the first request (once: `serve`
//! computes it in the background as it starts, so this is the whole
//! computation only when the request comes before that is done) and brought up to date after a change: a refused sign-in, and a
//! late tube's results arriving for one participant before each run. Run:
//!
//! ```text
//! cargo bench --bench console                               # 2,000 participants
//! LABFEED_BENCH_PARTICIPANTS=500 cargo bench --bench console
//! LABFEED_BENCH_KEEP=1 cargo bench --bench console          # keep the study, e.g. for perf
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jiff::civil::DateTime;
use labfeed::ingest::{Delivery, ingest_batch};
use labfeed::store::{Participant, Source, Store, Visit};
use labfeed::study::config::Config;

const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];
const CPEP: [f64; 7] = [0.30, 0.32, 0.55, 0.85, 1.10, 0.95, 0.80];
const GLUC: [f64; 7] = [5.2, 5.4, 7.8, 9.6, 10.4, 9.0, 7.5];
const ADMIN: (&str, &str) = ("bench.admin", "bench-password-1");
/// Requests per page; the first is a warm-up, not counted.
const RUNS: usize = 8;

fn code(p: usize) -> String {
    format!("U{p:04}")
}

fn meal_start(p: usize, visit: usize) -> DateTime {
    let first = jiff::civil::date(2024, 1, 8).at(8, 30, 0, 0);
    let days = (p / 8) as i64 + 182 * visit as i64;
    first.checked_add(jiff::Span::new().days(days)).expect("date in range")
}

fn hl7_time(t: DateTime) -> String {
    t.strftime("%Y%m%d%H%M").to_string()
}

/// One visit's MMTT from the central lab. The baseline (visit 0) is clean.
/// The follow-up has five queue rows: a high fasting glucose
/// (PRETEST_GLUCOSE), no 90-minute tube (two MISSING_RESULT rows), and by
/// turns a preliminary C-peptide (NOT_FINAL), an implausible one
/// (IMPLAUSIBLE) or a glucose in an unknown unit (UNKNOWN_UNIT), each held
/// (so its slot is listed as a MISSING_RESULT too).
fn visit_message(p: usize, visit: usize) -> String {
    let start = meal_start(p, visit);
    let resulted = hl7_time(start.checked_add(jiff::Span::new().hours(6)).expect("date"));
    let follow_up = visit == 1;
    let mut m = format!(
        "MSH|^~\\&|CENTRALLAB|UAS-KEM|LABFEED|BENCH|{resulted}||ORU^R01^ORU_R01|B{p:05}V{visit}|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
PID|1||{}^^^BENCH^PI\r",
        code(p)
    );
    let scale = 0.5 + (p % 10) as f64 / 10.0;
    for (i, &minute) in MINUTES.iter().enumerate() {
        if follow_up && minute == 90 {
            continue;
        }
        let drawn = hl7_time(start.checked_add(jiff::Span::new().minutes(i64::from(minute))).expect("date"));
        let mut cpep = format!("{:.3}", CPEP[i] * scale);
        let mut gluc = format!("{:.1}", GLUC[i] + (p % 5) as f64 * 0.1);
        let (mut status, mut unit) = ("F", "mmol/L");
        if follow_up {
            match (minute, p % 3) {
                (0, _) => gluc = "12.5".into(),
                (-10, 0) => status = "P",
                (60, 1) => cpep = "45.0".into(),
                (120, 2) => unit = "mmol/mol",
                _ => {}
            }
        }
        let sample = format!("{}-V{visit}-T{minute}", code(p));
        m.push_str(&format!(
            "OBR|{n}||{sample}^CENTRALLAB|MMTT^MMTT C-peptide and glucose^L|||{drawn}|||||||{drawn}||||||||{resulted}|||F\r\
OBX|1|NM|1986-9^C peptide^LN||{cpep}|nmol/L^^UCUM|0.37-1.47|N|||{status}|||{drawn}\r\
OBX|2|NM|14749-6^Glucose^LN||{gluc}|{unit}^^UCUM|4.0-6.0|N|||F|||{drawn}\r",
            n = i + 1
        ));
    }
    m
}

/// The follow-up's missing 90-minute tube of participant `p`, arriving late.
fn late_tube(p: usize) -> String {
    let start = meal_start(p, 1);
    let drawn = hl7_time(start.checked_add(jiff::Span::new().minutes(90)).expect("date"));
    let resulted = hl7_time(start.checked_add(jiff::Span::new().days(1)).expect("date"));
    format!(
        "MSH|^~\\&|CENTRALLAB|UAS-KEM|LABFEED|BENCH|{resulted}||ORU^R01^ORU_R01|B{p:05}V1L|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
PID|1||{code}^^^BENCH^PI\r\
OBR|1||{code}-V1-T90^CENTRALLAB|MMTT^MMTT C-peptide and glucose^L|||{drawn}|||||||{drawn}||||||||{resulted}|||F\r\
OBX|1|NM|1986-9^C peptide^LN||0.90|nmol/L^^UCUM|0.37-1.47|N|||F|||{drawn}\r\
OBX|2|NM|14749-6^Glucose^LN||8.8|mmol/L^^UCUM|4.0-6.0|N|||F|||{drawn}\r",
        code = code(p)
    )
}

/// Participants, two visits each with meal starts, and their messages: the
/// latest 200 received today (the Today page), the rest over the past weeks.
fn build_study(database: &Path, config: &Config, participants: usize) {
    let mut store = Store::open(database).expect("open");
    store
        .write(|tx| {
            for p in 0..participants {
                tx.upsert_participant(&Participant { code: code(p), site: None })?;
                for v in 0..2 {
                    tx.upsert_visit(&Visit {
                        participant: code(p),
                        visit: format!("V{v}"),
                        meal_start: Some(meal_start(p, v).into()),
                    })?;
                }
            }
            Ok(())
        })
        .expect("study data");
    let messages: Vec<(String, String)> = (0..participants)
        .flat_map(|p| (0..2).map(move |v| (format!("central/{}-V{v}.hl7", code(p)), visit_message(p, v))))
        .collect();
    let now = jiff::Timestamp::now();
    let total = messages.len();
    for (c, chunk) in messages.chunks(500).enumerate() {
        let deliveries: Vec<Delivery<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, (origin, text))| {
                let n = c * 500 + i;
                let ago = if n + 200 >= total { 0 } else { 3_600 * (24 + (total - n) as i64 / 50) };
                Delivery {
                    bytes: text.as_bytes(),
                    source: Source::Ingest,
                    origin: origin.clone(),
                    instrument: None,
                    received_at: now.checked_sub(jiff::SignedDuration::from_secs(ago)).expect("time"),
                }
            })
            .collect();
        for summary in ingest_batch(&mut store, config, &deliveries).expect("ingest") {
            assert_eq!(summary.errors, 0, "{summary:?}");
        }
    }
}

/// `labfeed serve`, stopped when dropped.
struct Served {
    child: Child,
    address: SocketAddr,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(binary: &Path, config: &Path) -> Served {
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("LABFEED_CONFIG")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("labfeed serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let address = loop {
        let line = lines.next().expect("serve ended before it listened").expect("stderr");
        if let Some(rest) = line.split("labfeed console listening on http://").nth(1) {
            break rest.trim_end_matches('/').parse().expect("an address");
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    Served { child, address }
}

/// One request (Connection: close): status, headers and body as text.
fn request(address: SocketAddr, method: &str, path: &str, cookie: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if !cookie.is_empty() {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if method == "POST" {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    stream.write_all(head.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    (status, text)
}

fn main() {
    // `cargo test` runs benches in test mode with `--bench` absent; keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let participants: usize =
        std::env::var("LABFEED_BENCH_PARTICIPANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let binary = Path::new(env!("CARGO_BIN_EXE_labfeed"));
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("lib");
    std::fs::create_dir(&root).expect("lib");
    let config_text = include_str!("../config/labfeed.example.toml")
        .replace("/var/lib/labfeed", root.to_str().expect("utf-8"))
        + "\n[web]\naddress = \"127.0.0.1:0\"\n";
    let config_path = dir.path().join("labfeed.toml");
    std::fs::write(&config_path, &config_text).expect("config");
    let config = Config::from_toml(&config_text, &config_path).expect("config");

    let start = Instant::now();
    build_study(&config.storage.database, &config, participants);
    let built = start.elapsed().as_secs_f64();
    let mut add = Command::new(binary)
        .arg("--config")
        .arg(&config_path)
        .args(["user", "add", ADMIN.0, "--role", "admin", "--full-name", "Bench Admin", "--new-password-stdin"])
        .env_remove("LABFEED_CONFIG")
        .stdin(Stdio::piped())
        .spawn()
        .expect("user add");
    add.stdin.take().expect("stdin").write_all(format!("{}\n", ADMIN.1).as_bytes()).expect("password");
    assert!(add.wait().expect("user add").success(), "labfeed user add");

    let served = serve(binary, &config_path);
    let (status, signed) =
        request(served.address, "POST", "/login", "", &format!("name={}&password={}", ADMIN.0, ADMIN.1));
    assert_eq!(status, 303, "{signed}");
    let cookie = signed
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: ").or_else(|| l.strip_prefix("Set-Cookie: ")))
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();

    let start = Instant::now();
    let (_, queue) = request(served.address, "GET", "/mismatches", &cookie, "");
    let whole = start.elapsed();
    let open = queue
        .split("<tfoot>")
        .nth(1)
        .and_then(|t| t.split("<td class=\"num\">").nth(1))
        .and_then(|t| t.split('<').next())
        .unwrap_or("?")
        .to_owned();
    // "CODE</a></th><td class="num">N</td>" in the counts table.
    let by_code: Vec<String> = queue
        .split("<th scope=\"row\"><a href=\"/mismatches?code=")
        .skip(1)
        .filter_map(|t| {
            let code = t.split('"').next()?;
            let n = t.split("<td class=\"num\">").nth(1)?.split('<').next()?;
            Some(format!("{code} {n}"))
        })
        .collect();
    let pages = queue.split("(page 1 of ").nth(1).and_then(|t| t.split(')').next()).unwrap_or("1").to_owned();
    let first_id =
        queue.split("href=\"/mismatches/").nth(1).and_then(|t| t.split('"').next()).expect("a mismatch").to_owned();
    println!(
        "study: {participants} participants x 2 visits, {open} open mismatches ({}; {pages} pages of the queue); \
         built by ingest_batch in {built:.1} s",
        by_code.join(", ")
    );

    let middle = code(participants / 2);
    let late = format!("/mismatches?page={}", pages.parse::<usize>().unwrap_or(1).saturating_sub(1).max(1));
    let trace = format!("/samples?id={middle}-V1-T60");
    let participant = format!("/participants/{middle}");
    let visit = format!("/participants/{middle}/V1");
    let detail = format!("/mismatches/{first_id}");
    // The queue is kept and brought up to date when the data change: these rows time it
    // after a refused sign-in (an audit row, no data) and after a late tube's results
    // arrive for one participant (by ingest_batch, as the daemon would store them).
    let refused = "Mismatches, first page, just after a refused sign-in";
    let arrived = "Mismatches, first page, just after results arrive";
    let mut store = Store::open(&config.storage.database).expect("open");
    let mut tubes = 0..participants;
    let targets: [(&str, &str); 16] = [
        ("Today", "/"),
        ("Mismatches, first page", "/mismatches"),
        (refused, "/mismatches"),
        (arrived, "/mismatches"),
        ("Mismatches, filtered and sorted", "/mismatches?code=NOT_FINAL&sort=age&page=3"),
        ("Mismatches, a late page", &late),
        ("A mismatch", &detail),
        ("Sample trace", &trace),
        ("Participants", "/participants"),
        ("A participant", &participant),
        ("A visit", &visit),
        ("AUC table", "/auc"),
        ("Audit trail", "/audit"),
        ("Audit trail, filtered", "/audit?entity=visit%2FU0001%2FV1"),
        ("Exports", "/exports"),
        ("Accounts", "/accounts"),
    ];
    println!("| page | path | median | slowest | size |");
    println!("|---|---|---|---|---|");
    println!(
        "| Mismatches, first page, the first request (queue computed at start) | `/mismatches` | {:.1} ms | (1 run) | {:.0} KiB |",
        whole.as_secs_f64() * 1000.0,
        queue.len() as f64 / 1024.0
    );
    for (name, path) in targets {
        let mut times = Vec::new();
        let mut size = 0;
        for run in 0..RUNS {
            if name == refused {
                let (status, _) = request(served.address, "POST", "/login", "", "name=no.one&password=wrong-password");
                assert_eq!(status, 401);
            }
            if name == arrived {
                let p = tubes.next().expect("a participant");
                let text = late_tube(p);
                let delivery = Delivery {
                    bytes: text.as_bytes(),
                    source: Source::Ingest,
                    origin: format!("central/{}-V1-late.hl7", code(p)),
                    instrument: None,
                    received_at: jiff::Timestamp::now(),
                };
                for summary in ingest_batch(&mut store, &config, &[delivery]).expect("ingest") {
                    assert_eq!((summary.errors, summary.accepted), (0, 2), "{summary:?}");
                }
            }
            let start = Instant::now();
            let (status, text) = request(served.address, "GET", path, &cookie, "");
            let took = start.elapsed();
            assert_eq!(status, 200, "GET {path}: {}", text.get(..2000).unwrap_or(&text));
            size = text.len();
            if run > 0 {
                times.push(took);
            }
        }
        times.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {name} | `{path}` | {:.1} ms | {:.1} ms | {:.0} KiB |",
            ms(times[times.len() / 2]),
            ms(times[times.len() - 1]),
            size as f64 / 1024.0
        );
    }
    drop(served);
    if std::env::var_os("LABFEED_BENCH_KEEP").is_some() {
        println!("study kept for profiling: {}", dir.keep().join("labfeed.toml").display());
    }
}

//! SPEC §11 and issue 14: the console's mismatch pages, over HTTP against
//! the real `labfeed serve`. The queue (counts by code, a filter, paging),
//! one mismatch (detail, curves, the stored message), a decision signed
//! with the password that leaves the queue and shows in `report mismatches
//! --all`, and the refusals: a wrong password, a viewer, a form without its
//! CSRF token.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};

use super::central::on_postgres;
use super::postgres::TestDb;
use super::support::{ADMIN, TempStudy, central, csv_rows, import_csv, ingest_bytes, ok, text, with_stdin};

/// `labfeed serve`, stopped when dropped.
struct Console {
    child: Child,
    address: SocketAddr,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Console {
    fn start(t: &TempStudy) -> Console {
        let mut child = t.command(&["serve"]).stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let address = loop {
            let line = lines.next().expect("serve ended before it listened").unwrap();
            if let Some(rest) = line.split("labfeed console listening on http://").nth(1) {
                break rest.trim_end_matches('/').parse().unwrap();
            }
        };
        // Keep reading its log so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Console { child, address }
    }

    fn request(&self, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Response {
        let mut stream = TcpStream::connect(self.address).unwrap();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.address);
        if let Some(cookie) = cookie {
            head.push_str(&format!("Cookie: labfeed_session={cookie}\r\n"));
        }
        let body = form.unwrap_or("");
        if form.is_some() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        stream.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        Response::parse(&raw)
    }

    fn get(&self, path: &str, cookie: &str) -> Response {
        self.request("GET", path, Some(cookie), None)
    }

    fn post(&self, path: &str, cookie: &str, form: &[(&str, &str)]) -> Response {
        let body: Vec<String> = form.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        self.request("POST", path, Some(cookie), Some(&body.join("&")))
    }

    /// Sign in; the session cookie.
    fn login(&self, name: &str, password: &str) -> String {
        let body = format!("name={}&password={}", encode(name), encode(password));
        let r = self.request("POST", "/login", None, Some(&body));
        assert_eq!(r.status, 303, "signing in as {name}: {}", r.body);
        let cookie = r.header("set-cookie").expect("a session cookie");
        cookie.split(';').next().unwrap().trim_start_matches("labfeed_session=").to_owned()
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn parse(raw: &[u8]) -> Response {
        let text = String::from_utf8_lossy(raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let mut lines = head.lines();
        let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
        let body = if chunked { dechunk(body) } else { body.to_owned() };
        Response { status, headers, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The links to single mismatches on a queue page.
    fn rows(&self) -> usize {
        self.body.matches("aria-label=\"Mismatch ").count()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of the first `name="csrf"` field of a page.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a CSRF field") + "name=\"csrf\" value=\"".len();
    page[at..].split('"').next().unwrap().to_owned()
}

/// Four participants with a visit each, one result per visit for two of
/// them and a conflicting rerun: one DUPLICATE_CONFLICT and over fifty
/// MISSING_RESULT rows.
fn study(t: TempStudy) -> TempStudy {
    let mut config = std::fs::read_to_string(&t.config).unwrap();
    config.push_str("\n[web]\naddress = \"127.0.0.1:0\"\n");
    std::fs::write(&t.config, config).unwrap();
    import_csv(&t, "participants", "participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    let visits = (1..=4).map(|n| format!("U0{n},V0,2026-03-02T08:00\n")).collect::<String>();
    import_csv(&t, "visits", "visits.csv", &format!("participant,visit,meal_start\n{visits}"));
    import_csv(&t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\n");
    let deliver = |name: &str, patient: &str, sample: &str, value: &str| {
        ingest_bytes(&t, name, central(name, patient, sample, "20260302083000", value).as_bytes())
    };
    assert!(deliver("C1", "U01", "S-1", "0.25").contains("1 accepted"));
    assert!(deliver("C2", "U02", "S-2", "0.40").contains("1 accepted"));
    assert!(deliver("C3", "U02", "S-2", "0.55").contains("1 mismatch"));
    t
}

/// `report mismatches` as CSV rows (header first).
fn report(t: &TempStudy, all: bool) -> Vec<Vec<String>> {
    let args: &[&str] = if all {
        &["report", "mismatches", "--all", "--format", "csv"]
    } else {
        &["report", "mismatches", "--format", "csv"]
    };
    csv_rows(&ok(&t.run(args)))
}

fn column(rows: &[Vec<String>], name: &str) -> usize {
    rows[0].iter().position(|c| c == name).unwrap()
}

#[test]
fn a_data_manager_decides_a_mismatch_in_the_browser_and_others_cannot() {
    decide_in_the_browser(study(TempStudy::new(&[])));
}

/// The same on a central PostgreSQL database (SPEC §10); skipped without a server.
#[test]
fn the_console_decides_on_postgres_too() {
    let Some(db) = TestDb::create() else { return };
    decide_in_the_browser(study(on_postgres(&db, "web")));
}

fn decide_in_the_browser(t: TempStudy) {
    t.create_accounts();
    let viewer = with_stdin(
        t.command(&[
            "--user",
            ADMIN.0,
            "--password-stdin",
            "user",
            "add",
            "viewer.vic",
            "--role",
            "viewer",
            "--new-password-stdin",
        ]),
        &format!("{}\nviewer-password-1\n", ADMIN.1),
    );
    assert_eq!(viewer.status.code(), Some(0), "{}", text(&viewer));
    let before = report(&t, false);
    let (id_col, code_col, part_col) = (column(&before, "id"), column(&before, "code"), column(&before, "participant"));
    let open = &before[1..];
    let count = |code: &str| open.iter().filter(|r| r[code_col] == code).count();
    let conflict = open.iter().find(|r| r[code_col] == "DUPLICATE_CONFLICT").unwrap()[id_col].clone();
    assert!(open.len() > 50, "enough rows for two pages: {}", open.len());

    let console = Console::start(&t);
    let dm = console.login("dm.anna", "dm-password-0001");

    // The queue: counts by code as `report mismatches` has them, a filter, two pages.
    let page = console.get("/mismatches", &dm);
    assert_eq!(page.status, 200, "{}", page.body);
    for code in ["DUPLICATE_CONFLICT", "MISSING_RESULT"] {
        let cell = format!(">{code}</a></th><td class=\"num\">{}</td>", count(code));
        assert!(page.body.contains(&cell), "{cell} in {}", page.body);
    }
    assert_eq!(page.rows(), 50, "{}", page.body);
    assert!(page.body.contains("href=\"/mismatches?page=2\""), "a next page: {}", page.body);
    assert!(page.body.contains("<label for=\"f-code\">Code</label>"), "labelled filters");
    let second = console.get("/mismatches?page=2", &dm);
    assert_eq!(second.rows(), open.len() - 50, "{}", second.body);
    assert!(second.body.contains("href=\"/mismatches?page=1\""), "a previous page");
    let filtered = console.get("/mismatches?code=DUPLICATE_CONFLICT", &dm);
    assert_eq!(filtered.rows(), 1, "{}", filtered.body);
    assert!(filtered.body.contains(&format!("href=\"/mismatches/{conflict}\"")), "{}", filtered.body);
    // The conflict came up just now; the missing results at the March visits are months old.
    let old = console.get("/mismatches?older=30&code=MISSING_RESULT", &dm);
    assert_eq!(old.rows(), count("MISSING_RESULT").min(50), "{}", old.body);
    let recent = console.get("/mismatches?older=30&code=DUPLICATE_CONFLICT", &dm);
    assert_eq!(recent.rows(), 0, "{}", recent.body);
    let u03 = console.get("/mismatches?participant=U03&sort=age", &dm);
    assert_eq!(u03.rows(), open.iter().filter(|r| r[part_col] == "U03").count(), "{}", u03.body);

    // One mismatch: its detail, the curves, the stored message, the meaning signed.
    let detail = console.get(&format!("/mismatches/{conflict}"), &dm);
    assert_eq!(detail.status, 200, "{}", detail.body);
    for shown in [
        "DUPLICATE_CONFLICT",
        "0.55 nmol/L",
        "Europe/Stockholm",
        "<svg",
        "The message as stored (masked)",
        "OBX|1|NM|1986-9^C peptide^LN||0.55|nmol/L",
        "I accept value 0.55 nmol/L of sample S-2 for U02/V0/30 min.",
        "<label for=\"accept-password\">",
    ] {
        assert!(detail.body.contains(shown), "{shown} in {}", detail.body);
    }
    assert!(!detail.body.contains("style=") && !detail.body.contains("<script"), "nothing the CSP forbids");
    let token = csrf(&detail.body);
    let decide = format!("/mismatches/{conflict}/decide");

    // No CSRF token: refused, nothing changed.
    let forged =
        console.post(&decide, &dm, &[("action", "accept"), ("reason", "forged"), ("password", "dm-password-0001")]);
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(report(&t, false), before, "a form without its token changes nothing");

    // A wrong password: the form again with the message; nothing recorded.
    let wrong = console.post(
        &decide,
        &dm,
        &[("csrf", &token), ("action", "accept"), ("reason", "rerun confirmed"), ("password", "not-it")],
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("Not signed") && wrong.body.contains("value=\"rerun confirmed\""), "{}", wrong.body);
    assert_eq!(report(&t, false), before);
    let audit = ok(&t.run(&["report", "audit", "--format", "csv", "--entity", "account"]));
    assert!(audit.contains("wrong password"), "the refusal is audited: {audit}");

    // A viewer sees the mismatch but may not decide it.
    let vic = console.login("viewer.vic", "viewer-password-1");
    let seen = console.get(&format!("/mismatches/{conflict}"), &vic);
    assert_eq!(seen.status, 200);
    assert!(seen.body.contains("needs the role data-manager") && !seen.body.contains("accept-password"));
    let refused = console.post(
        &decide,
        &vic,
        &[("csrf", &csrf(&seen.body)), ("action", "accept"), ("reason", "x"), ("password", "viewer-password-1")],
    );
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("needs the role data-manager"), "{}", refused.body);
    assert_eq!(report(&t, false), before);

    // The decision: signed, back to the queue with a confirmation, gone from it.
    let done = console.post(
        &decide,
        &dm,
        &[
            ("csrf", &token),
            ("action", "accept"),
            ("reason", "rerun confirmed by the lab"),
            ("password", "dm-password-0001"),
        ],
    );
    assert_eq!(done.status, 303, "{}", done.body);
    let back = done.header("location").unwrap().to_owned();
    assert_eq!(back, format!("/mismatches?decided={conflict}"));
    let queue = console.get(&back, &dm);
    assert!(
        queue.body.contains(&format!("Mismatch #{conflict} resolved (accept) by dm.anna (Anna Data, data-manager)")),
        "{}",
        queue.body
    );
    assert!(!queue.body.contains(">DUPLICATE_CONFLICT</a>"), "{}", queue.body);
    assert_eq!(report(&t, false).len(), before.len() - 1);
    let all = report(&t, true);
    let row = all.iter().find(|r| r[id_col] == conflict).unwrap();
    assert_eq!(row[column(&all, "decided_by")], "dm.anna");
    assert_eq!(row[column(&all, "decision")], "accept");
    assert_eq!(row[column(&all, "reason")], "rerun confirmed by the lab");

    // A decided mismatch offers a reopen only; deciding it again is refused.
    let decided = console.get(&format!("/mismatches/{conflict}"), &dm);
    assert!(decided.body.contains("reopen-password") && !decided.body.contains("accept-password"));
    let again = console.post(
        &decide,
        &dm,
        &[("csrf", &token), ("action", "reject"), ("reason", "twice"), ("password", "dm-password-0001")],
    );
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("already resolved"), "{}", again.body);

    // A missing result is marked not done the same way.
    let missing = before[1..].iter().find(|r| r[code_col] == "MISSING_RESULT").unwrap()[id_col].clone();
    let page = console.get(&format!("/mismatches/{missing}"), &dm);
    assert!(page.body.contains("not-done-reason"), "{}", page.body);
    let marked = console.post(
        &format!("/mismatches/{missing}/decide"),
        &dm,
        &[("csrf", &token), ("action", "not-done"), ("reason", "not drawn"), ("password", "dm-password-0001")],
    );
    assert_eq!(marked.status, 303, "{}", marked.body);
    assert_eq!(report(&t, false).len(), before.len() - 2);

    // The queue is kept between requests, until the data change: a rerun
    // ingested on the command line meanwhile is listed at once.
    assert_eq!(console.get("/mismatches?code=DUPLICATE_CONFLICT", &dm).rows(), 0);
    let rerun = central("C4", "U01", "S-1", "20260302083000", "0.31");
    assert!(ingest_bytes(&t, "C4", rerun.as_bytes()).contains("1 mismatch"));
    let queue = console.get("/mismatches?code=DUPLICATE_CONFLICT", &dm);
    assert_eq!(queue.rows(), 1, "{}", queue.body);
    assert_eq!(console.get("/mismatches", &dm).rows(), 50);
    let all = console.get("/mismatches?page=2", &dm);
    assert_eq!(all.rows(), report(&t, false).len() - 1 - 50, "{}", all.body);
}

#[test]
fn without_a_session_the_queue_is_not_shown() {
    let t = study(TempStudy::new(&[]));
    t.create_accounts();
    let console = Console::start(&t);
    let page = console.request("GET", "/mismatches", None, None);
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location"), Some("/login"));
    let post = console.request("POST", "/mismatches/1/decide", None, Some("action=accept&reason=x&password=y"));
    assert_eq!(post.status, 401);
}

//! The console's data pages through the real `labfeed serve` on loopback:
//! the AUC table, the audit trail (paged), the exports (the CLI's bytes), a
//! sample's trace, participant and visit views, the signed lock form, and
//! the account list, with the roles the server enforces.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};

use super::central::on_postgres;
use super::postgres::TestDb;
use super::support::{ADMIN, DATA_MANAGER, TempStudy, central, import_csv, ingest_bytes, ok, text};

/// A running `labfeed serve`, stopped when dropped.
struct Console {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(t: &TempStudy) -> Console {
    let mut config = std::fs::read_to_string(&t.config).unwrap();
    if !config.contains("[web]") {
        config.push_str("\n[web]\naddress = \"127.0.0.1:0\"\n");
        std::fs::write(&t.config, config).unwrap();
    }
    let mut child = t.command(&["serve"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut said = String::new();
    let addr = loop {
        let Some(Ok(line)) = lines.next() else { panic!("labfeed serve ended before listening: {said}") };
        if let Some(rest) = line.split("labfeed console listening on http://").nth(1) {
            break rest.trim_end_matches('/').parse().unwrap();
        }
        said.push_str(&line);
        said.push('\n');
    };
    // Keep reading its log so that it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Console { child, addr }
}

struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// One HTTP/1.1 request (Connection: close).
fn http(c: &Console, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Reply {
    let mut s = TcpStream::connect(c.addr).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", c.addr);
    if let Some(cookie) = cookie {
        req.push_str(&format!("Cookie: labfeed_session={cookie}\r\n"));
    }
    let body = form.unwrap_or("");
    if form.is_some() {
        req.push_str(&format!("Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let reply = Reply { status, head, body: Vec::new() };
    if reply.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { body, ..reply }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&data[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[line_end + 2..line_end + 2 + size]);
        data = &data[line_end + 2 + size + 2..];
    }
}

fn form_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => char::from(b).to_string(),
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Sign in; the session cookie.
fn sign_in(c: &Console, name: &str, password: &str) -> String {
    let reply =
        http(c, "POST", "/login", None, Some(&format!("name={}&password={}", form_value(name), form_value(password))));
    assert_eq!(reply.status, 303, "{}", reply.text());
    let cookie = reply.header("set-cookie").unwrap();
    cookie.split(';').next().unwrap().split_once('=').unwrap().1.to_owned()
}

/// The CSRF token a page's forms carry.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..].split('"').next().unwrap().to_owned()
}

fn get(c: &Console, cookie: &str, path: &str) -> String {
    let reply = http(c, "GET", path, Some(cookie), None);
    assert_eq!(reply.status, 200, "GET {path}: {}", reply.text());
    reply.text()
}

const VIEWER: (&str, &str) = ("vic.viewer", "viewer-password-1");

/// U01 to U04; U01/V0 and U02/V0 with meal starts; S-1 delivered, then a
/// conflicting rerun (a DUPLICATE_CONFLICT) that a data manager rejected;
/// a viewer whose full name needs escaping.
fn study() -> TempStudy {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    populate(&t);
    t
}

fn populate(t: &TempStudy) {
    import_csv(t, "participants", "participants.csv", "participant\nU01\nU02\nU03\nU04\n");
    import_csv(
        t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\nU02,V0,2026-03-02T08:00\n",
    );
    import_csv(t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\n");
    ingest_bytes(t, "first", central("first", "U01", "S-1", "20260302083000", "0.25").as_bytes());
    ingest_bytes(t, "second", central("second", "U01", "S-1", "20260302083000", "0.31").as_bytes());
    ingest_bytes(t, "other", central("other", "U02", "S-2", "20260302083000", "0.40").as_bytes());
    let csv = ok(&t.run(&["report", "mismatches", "--format", "csv"]));
    let id = csv.lines().find(|l| l.contains("DUPLICATE_CONFLICT")).unwrap().split(',').next().unwrap().to_owned();
    ok(&t.run(&["resolve", &id, "--reject", "--reason", "rerun <b>not</b> used"]));
    let out = t.run_with_stdin(
        &[
            "--user",
            ADMIN.0,
            "--password-stdin",
            "user",
            "add",
            VIEWER.0,
            "--role",
            "viewer",
            "--full-name",
            "Vic <b>Viewer</b>",
            "--new-password-stdin",
        ],
        &format!("{}\n{}\n", ADMIN.1, VIEWER.1),
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn the_data_pages_show_the_study_and_escape_it() {
    let t = study();
    let c = serve(&t);
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);

    let auc = get(&c, &dm, "/auc");
    for setting in
        ["0 to 120 min after meal start", "half the LLOQ", "no AUC for that visit and analyte", "V0 (Baseline)"]
    {
        assert!(auc.contains(setting), "{setting}: {auc}");
    }
    assert!(auc.contains("auc (unit·min)") && auc.contains("nmol/L"), "{auc}");
    let cli_rows = ok(&t.run(&["report", "auc", "--format", "csv"])).lines().count() - 1;
    assert!(cli_rows > 0);
    assert_eq!(auc.matches("<tr><th scope=\"row\">").count(), cli_rows, "{auc}");

    let trace = get(&c, &dm, "/samples?id=S-1");
    assert!(trace.contains("In the sample manifest"), "{trace}");
    assert!(trace.contains("DUPLICATE_CONFLICT") && trace.contains("0.25 nmol/L"), "{trace}");
    assert!(trace.contains("control ID first") && trace.contains("control ID second"), "{trace}");
    assert!(trace.contains("rejected") && trace.contains("rerun &lt;b&gt;not&lt;/b&gt; used"), "{trace}");
    assert!(!trace.contains("<b>not</b>"), "escaped: {trace}");
    let nothing = get(&c, &dm, "/samples?id=%3Cscript%3Ealert(1)%3C%2Fscript%3E");
    assert!(nothing.contains("&lt;script&gt;") && !nothing.contains("<script>"), "{nothing}");
    assert!(nothing.contains("Nothing has arrived for this sample ID."), "{nothing}");

    let participant = get(&c, &dm, "/participants/U01");
    assert!(participant.contains("<svg") && !participant.contains("style="), "{participant}");
    let results = ok(&t.run(&["export", "results"]));
    let u01 = results.lines().find(|l| l.starts_with("U01,V0,30,c_peptide,")).unwrap();
    let value: Vec<&str> = u01.split(',').skip(4).take(2).collect();
    let shown = format!("<tr><th scope=\"row\">30 min</th><td class=\"num\">{} {}</td>", value[0], value[1]);
    assert!(participant.contains(&shown), "{shown}: {participant}");
    assert!(participant.contains("c_peptide (nmol/L)"), "{participant}");
    let visit = get(&c, &dm, "/participants/U01/V0");
    assert!(visit.contains("Meal start (minute 0): 2026-03-02T08:00"), "{visit}");
    assert!(visit.contains("You sign: <strong>lock visit U01/V0</strong>"), "{visit}");
    assert_eq!(http(&c, "GET", "/participants/U99", Some(&dm), None).status, 404);
    assert!(get(&c, &dm, "/participants").contains("href=\"/participants/U04\""));

    // The exports are the command line's bytes.
    for (path, args) in [
        ("/exports/results.csv", vec!["export", "results"]),
        ("/exports/mismatches.csv", vec!["report", "mismatches", "--format", "csv"]),
        ("/exports/mismatches-all.csv", vec!["report", "mismatches", "--all", "--format", "csv"]),
        ("/exports/lb.csv", vec!["export", "lb"]),
        ("/exports/auc.csv", vec!["report", "auc", "--format", "csv"]),
        ("/exports/admmtt.csv", vec!["export", "adam"]),
    ] {
        let reply = http(&c, "GET", path, Some(&dm), None);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type").as_deref(), Some("text/csv; charset=utf-8"), "{path}");
        let name = path.rsplit('/').next().unwrap();
        assert_eq!(
            reply.header("content-disposition"),
            Some(format!("attachment; filename=\"NCT02057211-{name}\"")),
            "{path}"
        );
        let cli = t.run(&args);
        assert_eq!(cli.status.code(), Some(0), "{}", text(&cli));
        assert_eq!(reply.body, cli.stdout, "{path} differs from labfeed {}", args.join(" "));
    }
    // SAS transport files: the command line's, but for the time they were made.
    for (path, args, file) in [
        ("/exports/lb.xpt", vec!["export", "lb", "--format", "xpt", "--output"], "lb.xpt"),
        ("/exports/admmtt.xpt", vec!["export", "adam", "--format", "xpt", "--output"], "admmtt.xpt"),
    ] {
        let reply = http(&c, "GET", path, Some(&dm), None);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type").as_deref(), Some("application/octet-stream"), "{path}");
        let out = t.dir.path().join(file);
        let mut args: Vec<&str> = args;
        args.push(out.to_str().unwrap());
        let cli = t.run(&args);
        assert_eq!(cli.status.code(), Some(0), "{}", text(&cli));
        let written = std::fs::read(&out).unwrap();
        let observations = |bytes: &[u8]| -> Vec<u8> {
            let marker = b"HEADER RECORD*******OBS     HEADER RECORD";
            let at = bytes.windows(marker.len()).position(|w| w == marker).expect("an OBS header");
            bytes[at..].to_vec()
        };
        assert!(reply.body.starts_with(b"HEADER RECORD*******LIBRARY HEADER RECORD"), "{path}");
        assert_eq!(reply.body.len(), written.len(), "{path}");
        assert_eq!(observations(&reply.body), observations(&written), "{path}: the records differ");
    }
    // define.xml and its page: the command line's, but for the time they were made.
    for (path, args, content_type) in [
        ("/exports/define.xml", vec!["export", "define"], "application/xml; charset=utf-8"),
        ("/exports/define.html", vec!["export", "define", "--format", "html"], "text/html; charset=utf-8"),
    ] {
        let reply = http(&c, "GET", path, Some(&dm), None);
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type").as_deref(), Some(content_type), "{path}");
        let cli = t.run(&args);
        assert_eq!(cli.status.code(), Some(0), "{}", text(&cli));
        let timeless = |bytes: &[u8]| -> Vec<String> {
            let text = String::from_utf8(bytes.to_vec()).unwrap();
            text.lines()
                .filter(|l| !l.contains("CreationDateTime=") && !l.contains("as made by labfeed at"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(timeless(&reply.body), timeless(&cli.stdout), "{path}");
    }
    assert!(get(&c, &dm, "/exports").contains("href=\"/exports/lb.xpt\""));
    assert_eq!(http(&c, "GET", "/exports/secrets.csv", Some(&dm), None).status, 404);
    // Without a session: the login page, never data.
    let anonymous = http(&c, "GET", "/exports/results.csv", None, None);
    assert_eq!(anonymous.status, 303);
    assert!(anonymous.body.is_empty() || !anonymous.text().contains("participant,visit"));
}

#[test]
fn the_audit_trail_is_paged_and_filtered_like_report_audit() {
    let t = study();
    // Enough rows for more than one page.
    for n in 0..30 {
        let name = format!("more{n}");
        ingest_bytes(&t, &name, central(&name, "U02", "S-2", "20260302083000", &format!("0.{}", 41 + n)).as_bytes());
    }
    let csv = ok(&t.run(&["report", "audit", "--format", "csv"]));
    let seqs: Vec<String> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()).collect();
    assert!(seqs.len() > 100, "{} rows", seqs.len());
    let c = serve(&t);
    let viewer = sign_in(&c, VIEWER.0, VIEWER.1);

    let shown = |page: &str| -> Vec<String> {
        page.split("<tr><td class=\"num\">").skip(1).map(|r| r.split('<').next().unwrap().to_owned()).collect()
    };
    let first = get(&c, &viewer, "/audit");
    assert_eq!(shown(&first), seqs[..100], "{first}");
    let next = first.split("rel=\"next\"").next().unwrap().rsplit("href=\"").next().unwrap().split('"').next().unwrap();
    let next = next.replace("&amp;", "&");
    let second = get(&c, &viewer, &next);
    assert_eq!(shown(&second), seqs[100..seqs.len().min(200)], "{second}");

    // Filtered by account and entity, as the CLI filters.
    let cli =
        ok(&t.run(&["report", "audit", "--format", "csv", "--account", DATA_MANAGER.0, "--entity", "resolution"]));
    let cli_seqs: Vec<String> = cli.lines().skip(1).map(|l| l.split(',').next().unwrap().to_owned()).collect();
    assert!(!cli_seqs.is_empty());
    let page = get(&c, &viewer, &format!("/audit?account={}&entity=resolution", DATA_MANAGER.0));
    assert_eq!(shown(&page), cli_seqs, "{page}");
    assert!(page.contains("Anna Data") && page.contains("resolve reject"), "{page}");
    assert!(page.contains("rerun &lt;b&gt;not&lt;/b&gt; used"), "{page}");
    // Until a day before anything happened: nothing.
    let none = get(&c, &viewer, "/audit?until=2000-01-01");
    assert!(shown(&none).is_empty() && none.contains("No audit rows match."), "{none}");
    assert_eq!(http(&c, "GET", "/audit?since=yesterday", Some(&viewer), None).status, 400);
}

#[test]
fn a_lock_signed_in_the_form_is_in_status_and_the_audit_trail() {
    let t = study();
    let c = serve(&t);
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);
    let page = get(&c, &dm, "/participants/U01/V0");
    let token = csrf(&page);
    let lock = |cookie: &str, form: String| http(&c, "POST", "/participants/U01/V0/lock", Some(cookie), Some(&form));

    // No token, a wrong password: refused, nothing changes.
    assert_eq!(lock(&dm, format!("reason=clean&password={}", DATA_MANAGER.1)).status, 403);
    let wrong = lock(&dm, format!("csrf={token}&reason=clean&password=not-the-password"));
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(wrong.text().contains("nothing changed"), "{}", wrong.text());
    assert!(ok(&t.run(&["status"])).contains("data locks: none"));

    let done =
        lock(&dm, format!("csrf={token}&reason={}&password={}", form_value("visit reviewed & clean"), DATA_MANAGER.1));
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(done.header("location").as_deref(), Some("/participants/U01/V0"));
    let status = ok(&t.run(&["status"]));
    assert!(status.contains("data locks: 1\n  visit U01/V0 since "), "{status}");
    assert!(status.contains("visit reviewed & clean"), "{status}");
    let audit = ok(&t.run(&["report", "audit", "--entity", "lock"]));
    assert!(
        audit.contains("means: lock; reason: visit reviewed & clean") && audit.contains("lock visit U01/V0"),
        "{audit}"
    );
    let web_audit = get(&c, &dm, "/audit?entity=visit%2FU01%2FV0");
    assert!(web_audit.contains("lock visit U01/V0") && web_audit.contains("visit reviewed &amp; clean"), "{web_audit}");
    // Locking again says why not.
    let again = lock(&dm, format!("csrf={token}&reason=again&password={}", DATA_MANAGER.1));
    assert_eq!(again.status, 400);
    assert!(again.text().contains("is locked since"), "{}", again.text());

    // The page now offers the unlock form; unlocking is signed too.
    let page = get(&c, &dm, "/participants/U01/V0");
    assert!(page.contains("You sign: <strong>unlock visit U01/V0</strong>"), "{page}");
    let undone = http(
        &c,
        "POST",
        "/participants/U01/V0/unlock",
        Some(&dm),
        Some(&format!("csrf={token}&reason=late+result+expected&password={}", DATA_MANAGER.1)),
    );
    assert_eq!(undone.status, 303, "{}", undone.text());
    assert!(ok(&t.run(&["status"])).contains("data locks: none"));

    // A participant lock from its page.
    let done = http(
        &c,
        "POST",
        "/participants/U02/lock",
        Some(&dm),
        Some(&format!("csrf={token}&reason=withdrawn&password={}", DATA_MANAGER.1)),
    );
    assert_eq!(done.status, 303, "{}", done.text());
    assert!(ok(&t.run(&["status"])).contains("participant U02 since"));
}

#[test]
fn a_viewer_cannot_lock_or_see_the_accounts() {
    let t = study();
    let c = serve(&t);
    let viewer = sign_in(&c, VIEWER.0, VIEWER.1);
    let page = get(&c, &viewer, "/participants/U01/V0");
    assert!(!page.contains("You sign:"), "no lock form for a viewer: {page}");
    let token = csrf(&page);
    let refused = http(
        &c,
        "POST",
        "/participants/U01/V0/lock",
        Some(&viewer),
        Some(&format!("csrf={token}&reason=mine&password={}", VIEWER.1)),
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(ok(&t.run(&["status"])).contains("data locks: none"));
    assert_eq!(http(&c, "GET", "/accounts", Some(&viewer), None).status, 403);
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);
    assert_eq!(http(&c, "GET", "/accounts", Some(&dm), None).status, 403);

    let admin = sign_in(&c, ADMIN.0, ADMIN.1);
    let accounts = get(&c, &admin, "/accounts");
    for name in [ADMIN.0, DATA_MANAGER.0, VIEWER.0] {
        assert!(accounts.contains(name), "{name}: {accounts}");
    }
    assert!(accounts.contains("Vic &lt;b&gt;Viewer&lt;/b&gt;") && !accounts.contains("<b>Viewer"), "{accounts}");
    assert!(!accounts.contains("argon2"), "{accounts}");
    assert!(accounts.contains("data-manager") && accounts.contains("enabled"), "{accounts}");
}

/// The same pages on a PostgreSQL study: every query of the data pages runs there.
#[test]
fn the_data_pages_work_on_postgresql() {
    let Some(db) = TestDb::create() else { return };
    let t = on_postgres(&db, "web");
    populate(&t);
    for n in 0..30 {
        let name = format!("more{n}");
        ingest_bytes(&t, &name, central(&name, "U02", "S-2", "20260302083000", &format!("0.{}", 41 + n)).as_bytes());
    }
    let c = serve(&t);
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);
    assert!(get(&c, &dm, "/auc").contains("0 to 120 min after meal start"));
    let trace = get(&c, &dm, "/samples?id=S-1");
    assert!(trace.contains("DUPLICATE_CONFLICT") && trace.contains("control ID second"), "{trace}");
    assert!(get(&c, &dm, "/participants").contains("href=\"/participants/U04\""));
    assert!(get(&c, &dm, "/participants/U01").contains("<svg"));
    for (path, args) in [("/exports/results.csv", vec!["export", "results"]), ("/exports/lb.csv", vec!["export", "lb"])]
    {
        assert_eq!(http(&c, "GET", path, Some(&dm), None).body, ok(&t.run(&args)).into_bytes(), "{path}");
    }
    let csv = ok(&t.run(&["report", "audit", "--format", "csv"]));
    let seqs: Vec<&str> = csv.lines().skip(1).map(|l| l.split(',').next().unwrap()).collect();
    assert!(seqs.len() > 100, "{} rows", seqs.len());
    let first = get(&c, &dm, "/audit");
    let shown: Vec<&str> =
        first.split("<tr><td class=\"num\">").skip(1).map(|r| r.split('<').next().unwrap()).collect();
    assert_eq!(shown, seqs[..100]);
    assert!(first.contains("rel=\"next\""));

    let token = csrf(&get(&c, &dm, "/participants/U01/V0"));
    let done = http(
        &c,
        "POST",
        "/participants/U01/V0/lock",
        Some(&dm),
        Some(&format!("csrf={token}&reason=clean&password={}", DATA_MANAGER.1)),
    );
    assert_eq!(done.status, 303, "{}", done.text());
    assert!(ok(&t.run(&["status"])).contains("data locks: 1\n  visit U01/V0 since "));
    assert!(get(&c, &dm, "/audit?entity=lock").contains("lock visit U01/V0"));
}

#[test]
fn an_admin_adds_and_disables_accounts_signed_in_the_console() {
    let t = study();
    let c = serve(&t);
    let admin = sign_in(&c, ADMIN.0, ADMIN.1);
    let page = get(&c, &admin, "/accounts");
    assert!(page.contains("You sign: <strong>user add</strong>"), "{page}");
    let token = csrf(&page);
    let post = |path: &str, form: String| http(&c, "POST", path, Some(&admin), Some(&form));
    let add = |password: &str, again: &str| {
        format!(
            "csrf={token}&name=lab.lars&full_name=Lars+Lab&role=lab&new_password={}&new_password_again={}&reason=new+starter&password={}",
            form_value(password),
            form_value(again),
            form_value(ADMIN.1)
        )
    };
    assert_eq!(post("/accounts/add", add("lab-password-01", "lab-password-02")).status, 400, "passwords differ");
    assert_eq!(post("/accounts/add", add("short", "short")).status, 400, "too short");
    let done = post("/accounts/add", add("lab-password-01", "lab-password-01"));
    assert_eq!(done.status, 303, "{}", done.text());
    let list =
        ok(&t.run_with_stdin(&["--user", ADMIN.0, "--password-stdin", "user", "list"], &format!("{}\n", ADMIN.1)));
    assert!(list.contains("lab.lars\tLars Lab\tlab\tenabled"), "{list}");
    let again = post("/accounts/add", add("lab-password-01", "lab-password-01"));
    assert_eq!(again.status, 400);
    assert!(again.text().contains("lab.lars exists already"), "{}", again.text());

    // The new account signs in; disabled, its session ends and it cannot sign in again.
    let lars = sign_in(&c, "lab.lars", "lab-password-01");
    assert_eq!(http(&c, "GET", "/auc", Some(&lars), None).status, 200);
    let wrong = post("/accounts/disable", format!("csrf={token}&name=lab.lars&password=wrong-password-1"));
    assert_eq!(wrong.status, 403);
    let done =
        post("/accounts/disable", format!("csrf={token}&name=lab.lars&reason=left&password={}", form_value(ADMIN.1)));
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(http(&c, "GET", "/auc", Some(&lars), None).status, 303, "signed out");
    let refused = http(&c, "POST", "/login", None, Some("name=lab.lars&password=lab-password-01"));
    assert_eq!(refused.status, 401);
    let audit = ok(&t.run(&["report", "audit", "--entity", "account/lab.lars"]));
    assert!(
        audit.contains("means: user add; reason: new starter") && audit.contains("means: user disable; reason: left"),
        "{audit}"
    );
    // The last admin is not disabled; a data manager may not disable anyone.
    let last = post("/accounts/disable", format!("csrf={token}&name={}&password={}", ADMIN.0, form_value(ADMIN.1)));
    assert_eq!(last.status, 400);
    assert!(last.text().contains("last enabled admin"), "{}", last.text());
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);
    let dm_token = csrf(&get(&c, &dm, "/"));
    let denied = http(
        &c,
        "POST",
        "/accounts/disable",
        Some(&dm),
        Some(&format!("csrf={dm_token}&name={}&password={}", VIEWER.0, DATA_MANAGER.1)),
    );
    assert_eq!(denied.status, 403);
}

/// A first page of participants whose meals have not started does not say
/// the study has no AUC rows when a later page has them.
#[test]
fn an_empty_first_auc_page_points_to_the_rows_on_later_pages() {
    let t = TempStudy::new(&[("settle_seconds = 1.0", "settle_seconds = 0.1")]);
    let mut participants = String::from("participant\n");
    for n in 0..100 {
        participants.push_str(&format!("P{n:03}\n"));
    }
    participants.push_str("Z01\n");
    import_csv(&t, "participants", "participants.csv", &participants);
    import_csv(&t, "visits", "visits.csv", "participant,visit,meal_start\nZ01,V0,2026-03-02T08:00\n");
    let c = serve(&t);
    let dm = sign_in(&c, DATA_MANAGER.0, DATA_MANAGER.1);
    let first = get(&c, &dm, "/auc");
    assert!(!first.contains("No AUC rows yet"), "{first}");
    assert!(first.contains("No AUC rows for these participants") && first.contains("/auc?after=P099"), "{first}");
    let second = get(&c, &dm, "/auc?after=P099");
    assert!(second.contains(">Z01</a>") && second.contains("AUC rows shown."), "{second}");
}

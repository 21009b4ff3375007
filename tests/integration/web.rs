//! The web console (SPEC §11) over HTTP: the real `labfeed serve` on
//! 127.0.0.1, talked to by a small HTTP/1.1 client, so every security point
//! is checked on the wire: no session, cookies, CSRF, headers, size and rate
//! limits, the §8 lockout, other origins, escaping, TLS. And the Today page.
//!
//! [`Console`] and [`Session`] are for every page's tests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::support::{ADMIN, DATA_MANAGER, TempStudy, central, ok, path, text};

/// `labfeed serve` for a study, stopped when dropped.
pub(crate) struct Console {
    child: Child,
    pub(crate) address: SocketAddr,
    /// What the server said on stderr after its address line.
    log: Arc<Mutex<String>>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

/// A response as read off the wire.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    /// Names in lower case, in the order sent.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == &name.to_ascii_lowercase()).map(|(_, v)| v.as_str())
    }

    /// The session cookie's `name=value` from `Set-Cookie`, if set.
    pub(crate) fn session_cookie(&self) -> Option<String> {
        let set = self.header("set-cookie")?;
        set.split(';').next().map(|c| c.trim().to_owned()).filter(|c| c.starts_with("labfeed_session="))
    }

    /// The value of the first hidden `csrf` field on the page.
    pub(crate) fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\"")?;
        let rest = &self.body[at..];
        let start = rest.find("value=\"")? + "value=\"".len();
        let end = rest[start..].find('"')?;
        Some(rest[start..start + end].to_owned())
    }
}

/// A signed-in browser, as far as the server can tell: its cookie and the
/// CSRF token its pages carry.
pub(crate) struct Session {
    pub(crate) cookie: String,
    pub(crate) csrf: String,
}

/// `application/x-www-form-urlencoded`.
pub(crate) fn form_body(fields: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => (b as char).to_string(),
                b' ' => "+".to_owned(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

impl Console {
    /// Serve `t` on a free loopback port (plain HTTP).
    pub(crate) fn start(t: &TempStudy) -> Console {
        Console::start_with(t, "[web]\naddress = \"127.0.0.1:0\"\n", None)
    }

    /// Serve `t` with `web` appended to its config as the `[web]` section;
    /// `tls` is the client's configuration when the console speaks TLS.
    pub(crate) fn start_with(t: &TempStudy, web: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Console {
        set_web(t, web);
        let mut child = t
            .command(&["serve"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (sender, bound) = mpsc::channel();
        let kept = Arc::clone(&log);
        // Read stderr to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sender = Some(sender);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("labfeed console listening on ") {
                    let address = rest.split("://").nth(1).unwrap_or("").trim_end_matches('/');
                    if let (Some(sender), Ok(address)) = (sender.take(), address.parse::<SocketAddr>()) {
                        let _ = sender.send(address);
                        continue;
                    }
                }
                kept.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        // Generous: a cold start on a busy machine; it normally takes milliseconds.
        match bound.recv_timeout(Duration::from_secs(60)) {
            Ok(address) => Console { child, address, log, tls },
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().unwrap();
                panic!("labfeed serve did not say where it listens ({status}): {}", log.lock().unwrap());
            }
        }
    }

    /// `http://ADDRESS` or `https://localhost:PORT` (the certificate's name).
    pub(crate) fn url(&self) -> String {
        match self.tls {
            None => format!("http://{}", self.address),
            Some(_) => format!("https://localhost:{}", self.address.port()),
        }
    }

    /// What the server wrote on stderr so far (after its address line).
    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Send one request (Connection: close) and read the whole response.
    /// `head` lines are added as given (`Name: value`).
    pub(crate) fn request(&self, method: &str, target: &str, head: &[String], body: &[u8]) -> Response {
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.address);
        for line in head {
            request.push_str(line);
            request.push_str("\r\n");
        }
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let tcp = TcpStream::connect(self.address).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let raw = match &self.tls {
            None => exchange(tcp, &bytes),
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let conn = rustls::ClientConnection::new(Arc::clone(config), name).unwrap();
                exchange(rustls::StreamOwned::new(conn, tcp), &bytes)
            }
        };
        parse(&raw)
    }

    pub(crate) fn get(&self, target: &str, session: Option<&Session>) -> Response {
        let head: Vec<String> = session.map(|s| format!("Cookie: {}", s.cookie)).into_iter().collect();
        self.request("GET", target, &head, b"")
    }

    /// POST a form, with the session's cookie if any, and `extra` head lines.
    pub(crate) fn post(
        &self,
        target: &str,
        session: Option<&Session>,
        fields: &[(&str, &str)],
        extra: &[String],
    ) -> Response {
        let mut head = vec!["Content-Type: application/x-www-form-urlencoded".to_owned()];
        head.extend(session.map(|s| format!("Cookie: {}", s.cookie)));
        head.extend(extra.iter().cloned());
        self.request("POST", target, &head, form_body(fields).as_bytes())
    }

    /// Sign in as `name`; the session, with the CSRF token from Today.
    pub(crate) fn sign_in(&self, name: &str, password: &str) -> Session {
        let signed = self.post("/login", None, &[("name", name), ("password", password)], &[]);
        assert_eq!(signed.status, 303, "signing in as {name}: {signed:?}");
        assert_eq!(signed.header("location"), Some("/"));
        let cookie = signed.session_cookie().expect("a session cookie");
        let mut session = Session { cookie, csrf: String::new() };
        let today = self.get("/", Some(&session));
        assert_eq!(today.status, 200, "{today:?}");
        session.csrf = today.csrf().expect("the page's CSRF token");
        session
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

/// Write the request, read until the server closes.
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> Vec<u8> {
    // A refused request may be answered before all of it is read: a failed write is no failure here.
    let _ = stream.write_all(request).and_then(|()| stream.flush());
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            // A reset after the response (the rest of a refused body unread) ends it too.
            Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            // rustls: the peer closed without close_notify, after a complete response.
            Err(e) if !raw.is_empty() && e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the response: {e}"),
        }
    }
    raw
}

fn parse(raw: &[u8]) -> Response {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("a complete response head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status code");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = unchunk(&body);
    }
    Response { status, headers, body: String::from_utf8_lossy(&body).into_owned() }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = data.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&data[..eol]).split(';').next().unwrap().trim().to_owned();
        let size = usize::from_str_radix(&size, 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[eol + 2..eol + 2 + size]);
        data = &data[eol + 2 + size + 2..];
    }
    out
}

/// Replace the config's `[web]` section (the example has none) with `web`.
pub(crate) fn set_web(t: &TempStudy, web: &str) {
    let config = std::fs::read_to_string(&t.config).unwrap();
    let kept = match config.find("\n[web]\n") {
        Some(at) => {
            let after = &config[at + 7..];
            let end = after.find("\n[").map_or(config.len(), |e| at + 7 + e);
            format!("{}{}", &config[..at + 1], &config[end..])
        }
        None => config,
    };
    std::fs::write(&t.config, format!("{kept}\n{web}")).unwrap();
}

/// A study with its accounts (the database exists: `serve` needs one).
pub(crate) fn study() -> TempStudy {
    let t = TempStudy::new(&[]);
    t.create_accounts();
    t
}

fn is_login_redirect(r: &Response) -> bool {
    r.status == 303 && r.header("location") == Some("/login")
}

/// The headers every response must carry.
#[track_caller]
fn assert_secure_headers(what: &str, r: &Response) {
    let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{what}: no CSP: {r:?}"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{what}: {csp}");
    assert!(!csp.contains("http:") && !csp.contains("https:") && !csp.contains('*'), "{what}: another origin: {csp}");
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{what}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{what}");
}

#[test]
fn without_a_session_a_page_redirects_to_the_login_and_an_action_gets_401_never_data() {
    let t = study();
    let console = Console::start(&t);
    for target in ["/", "/mismatches", "/audit", "/accounts", "/no/such/page", "/?x=1"] {
        let r = console.get(target, None);
        assert!(is_login_redirect(&r), "GET {target} without a session: {r:?}");
        assert!(!r.body.contains(DATA_MANAGER.0) && !r.body.contains("NCT02057211"), "GET {target}: {}", r.body);
    }
    for target in ["/logout", "/", "/mismatches/1/decide"] {
        let r = console.post(target, None, &[("csrf", "x")], &[]);
        assert_eq!(r.status, 401, "POST {target} without a session: {r:?}");
    }
    // A forged or expired cookie is no session either.
    let forged = Session { cookie: format!("labfeed_session={}", "ab".repeat(32)), csrf: String::new() };
    assert!(is_login_redirect(&console.get("/", Some(&forged))));
    assert_eq!(console.post("/logout", Some(&forged), &[("csrf", "x")], &[]).status, 401);
    // The login page itself and its stylesheet need none.
    let login = console.get("/login", None);
    assert_eq!(login.status, 200);
    assert!(login.body.contains("<label for=\"name\">") && login.body.contains("<label for=\"password\">"));
    assert_eq!(console.get("/static/console.css", None).status, 200);
}

#[test]
fn the_session_cookie_is_random_httponly_samesite_strict_and_logout_ends_it() {
    let t = study();
    let console = Console::start(&t);
    let signed = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &[]);
    assert_eq!(signed.status, 303, "{signed:?}");
    let set = signed.header("set-cookie").unwrap();
    let attributes: Vec<&str> = set.split(';').map(str::trim).collect();
    for needed in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&needed), "{needed} missing: {set}");
    }
    assert!(!attributes.contains(&"Secure"), "no TLS here, so no Secure: {set}");
    let value = attributes[0].strip_prefix("labfeed_session=").unwrap();
    assert!(value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()), "32 random bytes: {value}");
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    assert_ne!(session.cookie, attributes[0], "every sign-in gets a new session");
    assert_ne!(session.csrf, value, "the CSRF token is not the cookie");

    // A wrong or missing CSRF token: 403, and the session goes on.
    let wrong = console.post("/logout", Some(&session), &[("csrf", &"0".repeat(64))], &[]);
    assert_eq!(wrong.status, 403, "{wrong:?}");
    assert_secure_headers("a refused logout", &wrong);
    let missing = console.post("/logout", Some(&session), &[], &[]);
    assert_eq!(missing.status, 403, "{missing:?}");
    assert_eq!(console.get("/", Some(&session)).status, 200);

    let out = console.post("/logout", Some(&session), &[("csrf", &session.csrf)], &[]);
    assert!(is_login_redirect(&out), "{out:?}");
    let cleared = out.header("set-cookie").unwrap();
    assert!(cleared.starts_with("labfeed_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    // The old cookie names no session any more.
    assert!(is_login_redirect(&console.get("/", Some(&session))));
    assert_eq!(console.post("/logout", Some(&session), &[("csrf", &session.csrf)], &[]).status, 401);
}

#[test]
fn every_response_carries_the_security_headers() {
    let t = study();
    let console = Console::start(&t);
    let session = console.sign_in(ADMIN.0, ADMIN.1);
    let responses = [
        ("the login page", console.get("/login", None)),
        ("a redirect to the login", console.get("/", None)),
        ("a refused action", console.post("/logout", None, &[], &[])),
        ("a refused login", console.post("/login", None, &[("name", ADMIN.0), ("password", "wrong-password!")], &[])),
        ("the stylesheet", console.get("/static/console.css", None)),
        ("Today", console.get("/", Some(&session))),
        ("a page not found", console.get("/no/such/page", Some(&session))),
        (
            "another origin's form",
            console.post(
                "/logout",
                Some(&session),
                &[("csrf", &session.csrf)],
                &["Origin: http://evil.example".into()],
            ),
        ),
    ];
    for (what, r) in &responses {
        assert_secure_headers(what, r);
        assert!(r.header("strict-transport-security").is_none(), "{what}: HSTS only under TLS");
    }
    let today = &responses[5].1;
    assert!(today.header("content-type").unwrap().starts_with("text/html"), "{today:?}");
    // No inline script or style anywhere (the CSP would block them anyway).
    assert!(!today.body.contains("<script") && !today.body.contains("style="), "{}", today.body);
    assert!(!responses[0].1.body.contains("<script") && !responses[0].1.body.contains("style="));
}

#[test]
fn a_request_body_over_64_kib_is_refused_with_413() {
    let t = study();
    let console = Console::start(&t);
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let big = format!("csrf={}&x={}", session.csrf, "a".repeat(64 * 1024));
    let head = ["Content-Type: application/x-www-form-urlencoded".to_owned(), format!("Cookie: {}", session.cookie)];
    let r = console.request("POST", "/logout", &head, big.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(console.get("/", Some(&session)).status, 200, "the session goes on");
    let big = format!("name=dm.anna&password={}", "a".repeat(64 * 1024));
    let r = console.request("POST", "/login", &head[..1], big.as_bytes());
    assert_eq!(r.status, 413, "{r:?}");
    // Just under the limit is read (and refused for what it says).
    let fits = format!("name=nobody&password={}", "a".repeat(60 * 1024));
    assert_eq!(console.request("POST", "/login", &head[..1], fits.as_bytes()).status, 401);
}

#[test]
fn the_eleventh_login_attempt_in_a_minute_from_one_address_gets_429() {
    let t = study();
    let console = Console::start(&t);
    for attempt in 1..=10 {
        let r = console.post("/login", None, &[("name", "nobody.here"), ("password", "not-a-password")], &[]);
        assert_eq!(r.status, 401, "attempt {attempt}: {r:?}");
    }
    // Even with the right password: the address is refused, not the account.
    let r = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &[]);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r.session_cookie().is_none());
    assert!(r.body.contains("too many sign-in attempts"), "{}", r.body);
    assert_secure_headers("429", &r);
}

fn audit_count(t: &TempStudy, action: &str) -> i64 {
    let conn = rusqlite::Connection::open(t.lib("labfeed.db")).unwrap();
    conn.query_row("SELECT count(*) FROM audit_log WHERE action = ?1", [action], |r| r.get(0)).unwrap()
}

#[test]
fn failed_web_logins_are_audited_and_five_refuse_the_account_on_the_command_line_too() {
    let t = study();
    let console = Console::start(&t);
    let before = audit_count(&t, "login failed");
    for attempt in 1..=5 {
        let r = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", "not-my-password")], &[]);
        assert_eq!(r.status, 401, "attempt {attempt}: {r:?}");
        assert!(r.session_cookie().is_none());
        assert!(!r.body.contains("not-my-password"), "the password is never echoed: {}", r.body);
    }
    assert_eq!(audit_count(&t, "login failed"), before + 5);
    assert!(!console.log().contains("not-my-password"), "nor logged: {}", console.log());
    // The right password is refused now, on the web and on the command line.
    let r = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.body.contains("5 failed logins in a row; the account is refused until"), "{}", r.body);
    let csv = t.file("p.csv", "participant\nU01\n");
    let out = t.run(&["import", "participants", path(&csv)]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("the account is refused until"), "{}", text(&out));
    let trail = ok(&t.run(&["report", "audit", "--format", "csv"]));
    let failures = trail.lines().filter(|l| l.contains("login failed") && l.contains(DATA_MANAGER.0)).count();
    assert!(failures >= 6, "each refusal is in the audit report: {trail}");
}

#[test]
fn an_account_disabled_on_the_command_line_loses_its_live_session_at_the_next_request() {
    let t = study();
    let console = Console::start(&t);
    let dm = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let admin = console.sign_in(ADMIN.0, ADMIN.1);
    assert_eq!(console.get("/mismatches", Some(&dm)).status, 200);
    // Another process: the command line, while the console runs.
    let out = t.run_with_stdin(
        &["--user", ADMIN.0, "--password-stdin", "user", "disable", DATA_MANAGER.0, "--reason", "left the study"],
        &format!("{}\n", ADMIN.1),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = console.get("/mismatches", Some(&dm));
    assert!(is_login_redirect(&page), "a page after the disable: {page:?}");
    assert!(!page.body.contains("Open mismatches"), "{}", page.body);
    let action = console.post("/logout", Some(&dm), &[("csrf", &dm.csrf)], &[]);
    assert_eq!(action.status, 401, "an action after the disable: {action:?}");
    // The session is gone for good, and the account cannot sign in again; others go on.
    assert!(is_login_redirect(&console.get("/", Some(&dm))));
    let again = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &[]);
    assert_eq!(again.status, 401, "{again:?}");
    assert_eq!(console.get("/mismatches", Some(&admin)).status, 200);
}

#[test]
fn a_state_change_from_another_origin_is_refused_with_403() {
    let t = study();
    let console = Console::start(&t);
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let csrf = [("csrf", session.csrf.as_str())];
    for extra in [
        &["Origin: http://evil.example"][..],
        &["Origin: null"],
        &["Sec-Fetch-Site: cross-site"],
        &["Sec-Fetch-Site: same-site", "Origin: http://other.127.0.0.1.example"],
        &["Sec-Fetch-Site: cross-site", "Origin: null"],
    ] {
        let extra: Vec<String> = extra.iter().map(|h| h.to_string()).collect();
        let r = console.post("/logout", Some(&session), &csrf, &extra);
        assert_eq!(r.status, 403, "{extra:?}: {r:?}");
        let r = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &extra);
        assert_eq!(r.status, 403, "login, {extra:?}: {r:?}");
        assert!(r.session_cookie().is_none());
    }
    assert_eq!(console.get("/", Some(&session)).status, 200, "still signed in");
    // Its own origin is welcome; so is Chromium's own form under no-referrer (Origin: null).
    let own = [format!("Origin: http://{}", console.address), "Sec-Fetch-Site: same-origin".into()];
    let chromium = ["Origin: null".to_owned(), "Sec-Fetch-Site: same-origin".into()];
    let signed = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &chromium);
    assert_eq!(signed.status, 303, "{signed:?}");
    let r = console.post("/logout", Some(&session), &csrf, &own);
    assert!(is_login_redirect(&r), "{r:?}");
}

/// Results for U07 (visit V4, meal 08:30): a cobas upload with held results
/// and a central-lab one, by `ingest`; then in the watch folder one good
/// HL7 file and one broken one, both with markup in their names.
pub(crate) fn deliveries(t: &TempStudy) {
    for (kind, body) in
        [("participants", "participant\nU07\n"), ("visits", "participant,visit,meal_start\nU07,V4,2026-03-02T08:30\n")]
    {
        super::support::import_csv(t, kind, &format!("{kind}.csv"), body);
    }
    let cobas = t.file(
        "cobas.astm",
        &super::support::e411(
            &[
                super::support::order(1, "U07-V4-T60"),
                super::resolve::r("CPEP", "45", "nmol/L", "20260302101500"),
                super::support::order(2, "NOPE-1"),
                super::resolve::r("CPEP", "0.4", "nmol/L", "20260302101500"),
            ]
            .concat(),
        ),
    );
    let out = t.run(&["ingest", path(&cobas)]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
    let inbox = t.lib("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("<b>bold.hl7"), central("C1", "U07", "U07-V4-T30", "202603020900", "0.8")).unwrap();
    std::fs::write(inbox.join("x<script>alert(1)<script>.hl7"), "MSH|this is not HL7\rgarbage").unwrap();
    let out = t.run(&["run", "--once"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
}

#[test]
fn today_shows_every_arrival_with_what_became_of_it_escaped_and_the_sources() {
    let t = study();
    deliveries(&t);
    let console = Console::start(&t);
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let today = console.get("/", Some(&session));
    assert_eq!(today.status, 200, "{today:?}");
    let page = &today.body;
    // Markup in a file name is shown, not obeyed.
    assert!(page.contains("&lt;b&gt;bold.hl7"), "{page}");
    assert!(page.contains("x&lt;script&gt;alert(1)&lt;script&gt;.hl7"), "{page}");
    assert!(!page.contains("<b>") && !page.contains("<script"), "unescaped: {page}");
    // What became of each.
    let row = |needle: &str| {
        page.split("<tr>").find(|r| r.contains(needle)).unwrap_or_else(|| panic!("no row with {needle}: {page}"))
    };
    assert!(row("bold.hl7").contains("archived, 1 result accepted"), "{}", row("bold.hl7"));
    let broken = row("alert(1)");
    assert!(broken.contains("quarantined: "), "the reason is given: {broken}");
    let cobas = row("cobas.astm");
    assert!(cobas.contains("labfeed ingest") && cobas.contains("2 results held"), "{cobas}");
    // The configured sources, each with its last arrival.
    let folder = row("Watch folder");
    assert!(folder.contains(path(&t.lib("inbox"))) && folder.contains("Europe/Stockholm"), "{folder}");
    assert!(row("Serial port").contains("nothing yet"), "{page}");
    assert!(row("Listener").contains("127.0.0.1:5001 (HL7 over MLLP)"), "{page}");
    // Today began at midnight in the study's zone, and the page says which zone.
    assert!(page.contains("00:00:00 Europe/Stockholm: 3 arrivals"), "{page}");
    assert!(page.contains("Times are shown in Europe/Stockholm."), "{page}");
    // Held: IMPLAUSIBLE and UNKNOWN_SAMPLE from the cobas upload, the unreadable message.
    assert!(page.contains("3 open mismatches"), "{page}");
    assert!(!page.contains("watch folder ("), "one site: no instance names: {page}");
}

/// A self-signed certificate for `localhost` and 127.0.0.1, written as PEM
/// files; the client configuration trusting it.
fn self_signed(t: &TempStudy) -> (String, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let cert_file = t.file("console.crt", &cert.pem());
    let key_file = t.file("console.key", &key.serialize_pem());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    #[allow(deprecated)] // ring, as the server (src/web/tls.rs)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let web = format!(
        "[web]\naddress = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        path(&cert_file),
        path(&key_file)
    );
    (web, Arc::new(config))
}

#[test]
fn under_tls_the_cookie_is_secure_and_responses_carry_hsts() {
    let t = study();
    let (web, client) = self_signed(&t);
    let console = Console::start_with(&t, &web, Some(client));
    let login = console.get("/login", None);
    assert_eq!(login.status, 200, "{login:?}");
    assert!(login.header("strict-transport-security").is_some_and(|h| h.contains("max-age=")), "{login:?}");
    assert_secure_headers("the login page over TLS", &login);
    let signed = console.post("/login", None, &[("name", DATA_MANAGER.0), ("password", DATA_MANAGER.1)], &[]);
    assert_eq!(signed.status, 303, "{signed:?}");
    let set = signed.header("set-cookie").unwrap();
    for needed in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.split(';').map(str::trim).any(|a| a == needed), "{needed} missing: {set}");
    }
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let today = console.get("/", Some(&session));
    assert_eq!(today.status, 200);
    assert!(today.header("strict-transport-security").is_some());
    // Plain HTTP to the TLS port gets no page.
    let mut plain = TcpStream::connect(console.address).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = plain.write_all(b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("HTTP/1.1 200"), "served without TLS");
}

#[test]
fn a_non_loopback_address_without_tls_is_refused_with_exit_2_naming_web_address() {
    let t = study();
    set_web(&t, "[web]\naddress = \"0.0.0.0:0\"\n");
    let out = t.command(&["serve"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("web.address"), "{}", text(&out));
    assert!(text(&out).contains("tls_cert"), "it says what to do: {}", text(&out));
    let out = t.run(&["check-config"]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("web.address"), "{}", text(&out));
    // With TLS it is accepted (the address itself is not tried here: 0.0.0.0 would listen on the LAN).
    let (web, _) = self_signed(&t);
    set_web(&t, &web.replace("127.0.0.1:0", "0.0.0.0:0"));
    let out = t.run(&["check-config"]);
    assert!(!text(&out).contains("web.address"), "{}", text(&out));
}

#[test]
fn today_on_postgresql_lists_the_days_arrivals() {
    let Some(db) = super::postgres::TestDb::create() else { return };
    let t = super::central::on_postgres(&db, "site-a");
    t.create_accounts();
    deliveries(&t);
    let console = Console::start(&t);
    let session = console.sign_in(DATA_MANAGER.0, DATA_MANAGER.1);
    let page = console.get("/", Some(&session)).body;
    assert!(page.contains("00:00:00 Europe/Stockholm: 3 arrivals"), "{page}");
    assert!(page.contains("archived, 1 result accepted") && page.contains("(site-a)"), "{page}");
    drop(console);
}

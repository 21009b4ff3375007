//! Issue 13 point 4: the central PostgreSQL server goes away in the middle
//! of a burst and comes back. A TCP proxy the test controls sits between
//! `labfeed run` and the real server on 127.0.0.1:5432; cutting it closes
//! every connection and refuses new ones. While it is cut nothing is
//! archived or acknowledged and `status` says since when the database is
//! unreachable; once it is restored the backlog is committed exactly once.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::central::point_at;
use super::daemon::{archived, files_in, upload};
use super::postgres::TestDb;
use super::support::{TempStudy, csv_rows, text};
use labfeed::store::Store;

const SERVER: &str = "127.0.0.1:5432";

/// A TCP relay to the PostgreSQL server that the test can cut and restore.
struct Proxy {
    port: u16,
    state: Arc<Mutex<Relayed>>,
}

#[derive(Default)]
struct Relayed {
    cut: bool,
    /// Connections accepted, refused ones included.
    accepted: usize,
    /// Both ends of every relayed connection, to be shut down by a cut.
    open: Vec<TcpStream>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Relayed::default()));
        let shared = Arc::clone(&state);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                // While cut, a new connection is closed before a byte passes.
                let mut relayed = shared.lock().unwrap();
                relayed.accepted += 1;
                if relayed.cut {
                    continue;
                }
                drop(relayed);
                let Ok(server) = TcpStream::connect(SERVER) else { continue };
                let mut relayed = shared.lock().unwrap();
                if relayed.cut {
                    continue;
                }
                relayed.open.push(client.try_clone().unwrap());
                relayed.open.push(server.try_clone().unwrap());
                drop(relayed);
                relay(client.try_clone().unwrap(), server.try_clone().unwrap());
                relay(server, client);
            }
        });
        Proxy { port, state }
    }

    /// Close every relayed connection (both ends) and refuse new ones.
    fn cut(&self) {
        let mut relayed = self.state.lock().unwrap();
        relayed.cut = true;
        for stream in relayed.open.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }

    fn accepted(&self) -> usize {
        self.state.lock().unwrap().accepted
    }

    /// `db`'s URL through this proxy.
    fn url(&self, db: &TestDb) -> String {
        let database = db.url().rsplit('/').next().unwrap().to_owned();
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
    }
}

fn relay(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = from.shutdown(Shutdown::Both);
        let _ = to.shutdown(Shutdown::Both);
    });
}

/// Wait (bounded, generously) for `condition`; never a statement about speed.
fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HL7 C-peptide result for U098 from the central lab's middleware.
fn oru(control: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|{control}|P|2.5.1\rPID|1||U098^^^TRIAL^PI\rOBR|1|U098-V4-T30^STUDY||MMTT|||202603020900\rOBX|1|NM|1986-9^C peptide^LN||0.8|nmol/L|||||F\r"
    )
}

/// Send one message over MLLP and return MSA-1 and the whole acknowledgement.
fn send_hl7(address: &str, payload: &str) -> (String, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut framed = vec![0x0B];
    framed.extend_from_slice(payload.as_bytes());
    framed.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&framed).unwrap();
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(&[0x1C, 0x0D]) {
        stream.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
    }
    let ack = String::from_utf8_lossy(&reply).into_owned();
    let msa = ack.split('\r').find(|s| s.starts_with("MSA|")).unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    (msa.split('|').nth(1).unwrap_or_default().to_owned(), ack)
}

/// What the daemon sends to `NOTIFY_SOCKET`, with when it came. Read all the
/// time: a socket that fills (10 datagrams) would block the daemon.
type Notes = Arc<Mutex<Vec<(Instant, String)>>>;

fn collect_notifications(socket: UnixDatagram) -> Notes {
    let notes = Notes::default();
    let kept = Arc::clone(&notes);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            kept.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(&buf[..n]).into_owned()));
        }
    });
    notes
}

/// `labfeed run`, stopped by SIGTERM when dropped (also when an assertion fails).
struct Daemon(Child);

impl Daemon {
    /// SIGTERM, and the exit code.
    fn stop(mut self) -> Option<i32> {
        let killed = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status().unwrap();
        assert!(killed.success());
        self.0.wait().unwrap().code()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn the_server_going_away_mid_burst_loses_nothing_acknowledges_nothing_and_the_backlog_is_committed_on_return() {
    let Some(db) = TestDb::create() else { return };
    let proxy = Proxy::start();
    let url = proxy.url(&db);
    let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let t = TempStudy::new(&[
        ("settle_seconds = 1.0", "settle_seconds = 0.2"),
        ("poll_interval_seconds = 2", "poll_interval_seconds = 1"),
        ("127.0.0.1:5001", &listen),
    ]);
    point_at(&t.config, &url, "site-a");
    let participants: Vec<String> =
        std::iter::once("participant".to_owned()).chain((0..100).map(|i| format!("U{i:03}"))).collect();
    let csv = t.file("participants.csv", &participants.join("\n"));
    let imported = t.run(&["import", "participants", csv.to_str().unwrap()]);
    assert_eq!(imported.status.code(), Some(0), "{}", text(&imported));

    let (inbox, archive) = (t.lib("inbox"), t.lib("archive"));
    let log_path = t.dir.path().join("daemon.log");
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let notify_path = t.dir.path().join("notify.sock");
    let notes = collect_notifications(UnixDatagram::bind(&notify_path).unwrap());
    let daemon = Daemon(
        t.command(&["run"])
            // systemd's WatchdogSec=2: a ping every second while the writer is healthy.
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", "2000000")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log_path).unwrap()))
            .spawn()
            .unwrap(),
    );
    wait_until("the daemon to create the inbox", || inbox.is_dir());
    std::fs::write(inbox.join("probe.astm"), upload(99, 0)).unwrap();
    wait_until("the probe file to be archived", || archived(&archive).iter().any(|p| p.ends_with("probe.astm")));
    let is_archived = |name: &str| archived(&archive).iter().any(|p| p.ends_with(name));
    let name = |i: usize| format!("burst-{i:02}.astm");

    // The first half of the burst; the server goes away once part of it is committed.
    for i in 0..40 {
        std::fs::write(inbox.join(name(i)), upload(i, i % 35)).unwrap();
    }
    wait_until("part of the burst to be committed", || (0..40).any(|i| is_archived(&name(i))));
    proxy.cut();
    for i in 40..80 {
        std::fs::write(inbox.join(name(i)), upload(i, i % 35)).unwrap();
    }
    // An analyzer link is answered, but never with AA, while nothing can be stored.
    let (code, ack) = send_hl7(&listen, &oru("CL-1"));
    assert_eq!(code, "AR", "not acknowledged as accepted: {ack:?}");
    assert!(ack.contains("unreachable"), "the reason is given: {ack:?}");

    // `status` (another process, which cannot reach the server either) says since when.
    let status = || t.command(&["status"]).output().unwrap();
    let since_line = || {
        let out = status();
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = said.lines().find(|l| l.starts_with("daemon: cannot commit since 20")).map(str::to_owned);
        (out, line)
    };
    let mut first = None;
    wait_until("status to say the daemon cannot commit", || {
        let (out, line) = since_line();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        first = line;
        first.is_some()
    });
    let first = first.unwrap();
    let shown = format!("the database {url} is unreachable: ");
    assert!(first.contains(&shown), "said plainly, URL without password: {first}");
    // T itself has colons, but no ": ".
    let since = |line: &str| line.split(" since ").nth(1).and_then(|r| r.split(": ").next()).unwrap_or("?").to_owned();
    // Retried with a back-off, and T is kept across the retries.
    wait_until("a retry after the first failure", || log().contains("next attempt in"));
    let (out, again) = since_line();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(since(&again.unwrap_or_default()), since(&first), "T is when it became unreachable");
    assert!(log().contains(&format!("cannot commit since {}", since(&first))), "the log says it too: {}", log());

    // Nothing of the second half is archived or quarantined; nothing at all is lost.
    let waiting = files_in(&inbox);
    for i in 40..80 {
        assert!(waiting.contains(&name(i)) && !is_archived(&name(i)), "{} stays in the inbox", name(i));
    }
    for i in 0..40 {
        assert!(waiting.contains(&name(i)) || is_archived(&name(i)), "{} is in the inbox or archived", name(i));
    }
    assert!(files_in(&t.lib("quarantine")).is_empty(), "nothing quarantined");
    // systemd hears it, and the watchdog keeps being fed: a restart could not reach the server
    // either. By the third attempt commits have failed for over 3 s, beyond WatchdogSec (2 s).
    let sent = |after: Option<Instant>, what: &dyn Fn(&str) -> bool| {
        notes.lock().unwrap().iter().any(|(at, m)| after.is_none_or(|after| *at > after) && what(m))
    };
    let status_line = |m: &str| m.starts_with("STATUS=cannot commit since") && m.contains(&shown);
    assert!(sent(None, &status_line), "{:?}", notes.lock().unwrap());
    wait_until("a third attempt", || log().contains("next attempt in 4 s"));
    let mark = Some(Instant::now());
    wait_until("a watchdog ping while the server is away", || sent(mark, &|m| m.trim_end() == "WATCHDOG=1"));

    // The server is back: the backlog is committed, each file exactly once.
    proxy.restore();
    wait_until("the whole burst to be archived", || (0..80).all(|i| is_archived(&name(i))));
    let (code, ack) = send_hl7(&listen, &oru("CL-1"));
    assert_eq!(code, "AA", "stored, then acknowledged: {ack:?}");
    assert!(files_in(&inbox).is_empty(), "{:?}", files_in(&inbox));
    assert!(log().contains("commits work again"), "recovery is logged: {}", log());
    let healthy = status();
    assert_eq!(healthy.status.code(), Some(0), "{}", text(&healthy));
    assert!(!String::from_utf8_lossy(&healthy.stdout).contains("cannot commit"), "{}", text(&healthy));

    let exported = t.command(&["export", "results"]).output().unwrap();
    let rows = csv_rows(&String::from_utf8_lossy(&exported.stdout));
    let rows = &rows[1..];
    let per = |code: &str| rows.iter().filter(|r| r[0] == code).count();
    for i in 0..80 {
        assert_eq!(per(&format!("U{i:03}")), 2, "U{i:03}'s two results, once each: {rows:?}");
    }
    assert_eq!(per("U098"), 1, "the HL7 result once, though it was sent twice");
    assert_eq!(per("U099"), 2, "the probe");
    assert_eq!(rows.len(), 80 * 2 + 3, "nothing else: {rows:?}");
    // The lost session took the instance name with it; the daemon holds it again.
    let key = labfeed::store::postgres::instance_key("site-a");
    let held = |db: &TestDb| -> i64 {
        let (classid, objid) = (((key as u64) >> 32) as u32, key as u32);
        db.connect()
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted
                   AND classid = $1 AND objid = $2 AND objsubid = 1",
                &[&classid, &objid],
            )
            .unwrap()
            .get(0)
    };
    wait_until("the instance lock to be taken again", || held(&db) == 1);
    assert_eq!(daemon.stop(), Some(0), "{}", log());
}

#[test]
fn after_a_failed_reconnect_the_queries_right_after_it_fail_at_once_instead_of_each_trying_again() {
    let Some(db) = TestDb::create() else { return };
    let proxy = Proxy::start();
    let store = Store::open(proxy.url(&db)).unwrap();
    let exists = || store.read(|r| r.participant_exists("U001"));
    assert!(!exists().unwrap());
    proxy.cut();
    let before = proxy.accepted();
    // The first notices the lost session, the second reconnects and is refused, the rest wait.
    for _ in 0..20 {
        let e = exists().unwrap_err();
        assert!(e.is_unreachable(), "{e}");
        assert!(e.to_string().starts_with(&format!("the database {} is unreachable: ", proxy.url(&db))), "{e}");
    }
    assert_eq!(proxy.accepted() - before, 1, "one reconnect attempt, not one per query");
    proxy.restore();
    wait_until("the session to be made anew", || exists().is_ok());
}

//! Ingest throughput: a backlog of 10,000 small result files through the
//! real pipeline into a real SQLite file with durable commits (WAL,
//! synchronous=FULL), reported as files/s and results/s. The same backlog
//! then goes into a fresh PostgreSQL database on 127.0.0.1:5432 when a
//! server answers there: from one site, and split between two sites
//! writing at once (two stores, two threads). It also loads the same rows
//! with the `sqlite3` shell's CSV import for comparison, when the shell is
//! installed. Run:
//!
//! ```text
//! cargo bench --bench ingest            # 10,000 files
//! LABFEED_BENCH_FILES=2000 cargo bench --bench ingest
//! LABFEED_BENCH_POSTGRES=postgresql://USER@HOST:PORT cargo bench --bench ingest   # another server
//! LABFEED_BENCH_KEEP=DIR cargo bench --bench ingest   # keep copies of the SQLite databases in DIR
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use labfeed::ingest::{Delivery, ingest_batch};
use labfeed::store::{AuditSettings, Participant, Source, Store, Visit};
use labfeed::study::config::Config;

/// The PostgreSQL server tried, without a database name (`test` must exist on it).
const POSTGRES: &str = "postgresql://postgres@127.0.0.1:5432";

const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];
const VISITS: [&str; 5] = ["V0", "V1", "V2", "V3", "V4"];

/// One CSV row of the comparison: participant, visit, analyte, value, minute.
type Row = (String, String, String, String, i32);

fn upload(n: usize) -> (String, [Row; 2]) {
    let participant = format!("U{:03}", n / 35);
    let visit = VISITS[(n / 7) % 5];
    let minute = MINUTES[n % 7];
    let sample = format!("{participant}-{visit}-T{minute}");
    let cpep = format!("{}.{:03}", n % 3, n % 1000);
    let gluc = format!("{}.{}", 4 + n % 9, n % 10);
    let text = format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
P|1\r\
O|1|{sample}|{n}^0012^2^^S1^SC|^^^CPEP^1\\^^^GLUC^1|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP|{cpep}|nmol/L||N||F||ADMIN|20260302100000|20260302101000|E1\r\
C|1|I|0|I\r\
R|2|^^^GLUC|{gluc}|mmol/L||N||F||ADMIN|20260302100000|20260302101100|E1\r\
C|1|I|0|I\r\
L|1|N\r"
    );
    let rows = [
        (participant.clone(), visit.to_owned(), "c_peptide".to_owned(), cpep, minute),
        (participant, visit.to_owned(), "glucose".to_owned(), gluc, minute),
    ];
    (text, rows)
}

/// One visit's whole MMTT in one upload, as an analyzer's batch sends it:
/// 7 samples, C-peptide and glucose each (14 results).
fn visit_upload(v: usize) -> String {
    let participant = format!("U{:03}", v / 5);
    let visit = VISITS[v % 5];
    let mut text = String::from("H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\rP|1\r");
    for (i, minute) in MINUTES.iter().enumerate() {
        let n = v * 7 + i;
        text.push_str(&format!(
            "O|{}|{participant}-{visit}-T{minute}|{n}^0012^2^^S1^SC|^^^CPEP^1\\^^^GLUC^1|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP|{}.{:03}|nmol/L||N||F||ADMIN|20260302100000|20260302101000|E1\r\
R|2|^^^GLUC|{}.{}|mmol/L||N||F||ADMIN|20260302100000|20260302101100|E1\r",
            i + 1,
            n % 3,
            n % 1000,
            4 + n % 9,
            n % 10
        ));
    }
    text.push_str("L|1|N\r");
    text
}

/// The example configuration (its study rules; the store is opened apart).
fn config(database: &Path) -> Config {
    let config_text = include_str!("../config/labfeed.example.toml")
        .replace("/var/lib/labfeed/labfeed.db", database.to_str().expect("utf-8 path"));
    Config::from_toml(&config_text, Path::new("bench.toml")).expect("config")
}

/// A store on `database` (a file, or a `postgresql://` URL) recording its
/// audit head in `head_file`.
fn open(database: &str, head_file: PathBuf) -> Store {
    Store::open_with(database, AuditSettings { key: None, head_file: Some(head_file) }).expect("open")
}

/// A study database at `database` (a file or a URL) with `participants`
/// participants of five visits each.
fn study(database: &str, head_file: PathBuf, participants: usize) -> Store {
    let mut store = open(database, head_file);
    store
        .write(|tx| {
            for p in 0..=participants {
                let code = format!("U{p:03}");
                tx.upsert_participant(&Participant { code: code.clone(), site: None })?;
                for v in VISITS {
                    tx.upsert_visit(&Visit { participant: code.clone(), visit: v.into(), meal_start: None })?;
                }
            }
            Ok(())
        })
        .expect("study data");
    store
}

/// Push `texts` through the pipeline as `labfeed ingest` does (batches of
/// 500 files, two durable commits each): results accepted and seconds taken.
fn ingest_all<'a>(store: &mut Store, config: &Config, texts: impl Iterator<Item = &'a str>, name: &str) -> (u64, f64) {
    let texts: Vec<&str> = texts.collect();
    let start = Instant::now();
    let mut accepted = 0u64;
    for (b, chunk) in texts.chunks(500).enumerate() {
        let deliveries: Vec<Delivery<'_>> = chunk
            .iter()
            .enumerate()
            .map(|(i, text)| Delivery {
                bytes: text.as_bytes(),
                source: Source::Ingest,
                origin: format!("backlog/{name}-{:05}.astm", b * 500 + i),
                instrument: None,
                received_at: jiff::Timestamp::now(),
            })
            .collect();
        for summary in ingest_batch(store, config, &deliveries).expect("ingest") {
            accepted += u64::from(summary.accepted);
        }
    }
    (accepted, start.elapsed().as_secs_f64())
}

/// The same pipeline on visit-sized uploads (a backlog of batch uploads);
/// results/s.
fn bench_visit_uploads(config: &Config, database: &str, head_file: PathBuf, visits: usize, engine: &str) -> f64 {
    let mut store = study(database, head_file, visits / 5);
    let uploads: Vec<String> = (0..visits).map(visit_upload).collect();
    let (accepted, seconds) = ingest_all(&mut store, config, uploads.iter().map(String::as_str), "visit");
    assert_eq!(accepted, 14 * visits as u64, "every result accepted");
    println!(
        "labfeed ingest{engine}, one visit per file: {visits} files, {accepted} results in {seconds:.2} s = {:.0} results/s",
        accepted as f64 / seconds
    );
    accepted as f64 / seconds
}

/// A fresh database on the PostgreSQL server, dropped with this value
/// (also when the bench panics).
struct PgDb {
    server: String,
    name: String,
}

impl PgDb {
    /// `None` when no server answers (or it refuses a new database).
    fn create(server: &str) -> Option<PgDb> {
        let admin_url = format!("{server}/test");
        // Messages name the server without a password the URL may hold.
        let shown = labfeed::store::Location::of(Path::new(&admin_url)).display();
        let mut admin = match labfeed::store::postgres::connect(&admin_url) {
            Ok(admin) => admin,
            Err(e) => {
                println!("PostgreSQL part skipped: {e}");
                return None;
            }
        };
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("random name");
        let name = format!("labfeed_bench_{}", labfeed::store::hex(&bytes));
        if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {name}")) {
            println!("PostgreSQL part skipped: cannot create a database from {shown}: {e}");
            return None;
        }
        Some(PgDb { server: server.to_owned(), name })
    }

    fn url(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        match labfeed::store::postgres::connect(&format!("{}/test", self.server)) {
            Ok(mut admin) => {
                if let Err(e) = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
                    eprintln!("could not drop the bench database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("could not drop the bench database {}: {e}", self.name),
        }
    }
}

/// The backlog into PostgreSQL: from one site, then split between two sites
/// writing at once (distinct participants, so the halves never conflict;
/// they take turns at labfeed's write lock). `sqlite` is SQLite's results/s
/// for the same backlog, for the ratio.
fn bench_postgres(dir: &Path, config: &Config, uploads: &[(String, [Row; 2])], sqlite: (f64, f64)) {
    let server = std::env::var("LABFEED_BENCH_POSTGRES").unwrap_or_else(|_| POSTGRES.to_owned());
    let files = uploads.len();
    let Some(db) = PgDb::create(&server) else { return };
    let mut store = study(&db.url(), dir.join("pg-one.audit-head"), files / 35);
    let (accepted, seconds) = ingest_all(&mut store, config, uploads.iter().map(|(text, _)| text.as_str()), "sample");
    assert_eq!(accepted, 2 * files as u64, "every result accepted");
    let rate = accepted as f64 / seconds;
    println!(
        "labfeed ingest on PostgreSQL: {files} files, {accepted} results in {seconds:.2} s = {:.0} files/s, {rate:.0} results/s",
        files as f64 / seconds
    );
    println!("PostgreSQL / SQLite results/s, one sample per file: {:.2} (target at least 0.33)", rate / sqlite.0);
    drop(store);
    drop(db);

    let db = PgDb::create(&server).expect("a second database on the server that made the first");
    let visit_rate =
        bench_visit_uploads(config, &db.url(), dir.join("pg-visits.audit-head"), files / 7, " on PostgreSQL");
    println!("PostgreSQL / SQLite results/s, one visit per file: {:.2}", visit_rate / sqlite.1);
    drop(db);

    // Two sites at once: one study, two stores (two connections), each
    // with its own half of the participants.
    let db = PgDb::create(&server).expect("a third database on the server that made the first");
    drop(study(&db.url(), dir.join("pg-setup.audit-head"), files / 35));
    let sites: Vec<(Store, Vec<&str>)> = (0..2)
        .map(|site| {
            let store = open(&db.url(), dir.join(format!("pg-site{site}.audit-head")));
            let texts = (0..files).filter(|n| (n / 35) % 2 == site).map(|n| uploads[n].0.as_str()).collect::<Vec<_>>();
            (store, texts)
        })
        .collect();
    let start = Instant::now();
    let per_site: Vec<(u64, f64)> = std::thread::scope(|scope| {
        let running: Vec<_> = sites
            .into_iter()
            .enumerate()
            .map(|(site, (mut store, texts))| {
                scope.spawn(move || ingest_all(&mut store, config, texts.into_iter(), &format!("site{site}")))
            })
            .collect();
        running.into_iter().map(|t| t.join().expect("a site's thread")).collect()
    });
    let wall = start.elapsed().as_secs_f64();
    let total: u64 = per_site.iter().map(|(accepted, _)| accepted).sum();
    assert_eq!(total, 2 * files as u64, "every result accepted");
    let each: Vec<String> =
        per_site.iter().map(|(a, s)| format!("{a} results in {s:.2} s ({:.0}/s)", *a as f64 / s)).collect();
    println!(
        "labfeed ingest on PostgreSQL, two sites at once: {files} files, {total} results in {wall:.2} s wall = {:.0} results/s in all; {}",
        total as f64 / wall,
        each.join(", ")
    );
    // The two writers took turns: one unbroken chain.
    let chain = open(&db.url(), dir.join("pg-check.audit-head")).verify_audit_chain().expect("audit chain");
    assert!(chain.broken.is_none(), "the two sites' audit rows form one chain");
    println!("audit chain after two sites: {} rows, intact", chain.rows_checked);
}

fn main() {
    // `cargo test` runs benches in test mode with `--bench` absent; keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let files: usize = std::env::var("LABFEED_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("bench.db");
    let config = config(&database);
    let mut store = study(database.to_str().expect("utf-8 path"), dir.path().join("bench.audit-head"), files / 35);

    let uploads: Vec<_> = (0..files).map(upload).collect();
    let (accepted, seconds) = ingest_all(&mut store, &config, uploads.iter().map(|(text, _)| text.as_str()), "sample");
    assert_eq!(accepted, 2 * files as u64, "every result accepted");
    println!(
        "labfeed ingest: {files} files, {accepted} results in {seconds:.2} s = {:.0} files/s, {:.0} results/s (durable commits, 500 files per batch)",
        files as f64 / seconds,
        accepted as f64 / seconds
    );
    drop(store);
    print_database_size(&database, accepted);
    let visits_db = dir.path().join("visits.db");
    let visit_rate = bench_visit_uploads(
        &config,
        visits_db.to_str().expect("utf-8 path"),
        dir.path().join("visits.audit-head"),
        files / 7,
        "",
    );
    print_database_size(&visits_db, 14 * (files / 7) as u64);
    bench_postgres(dir.path(), &config, &uploads, (accepted as f64 / seconds, visit_rate));

    // The same rows through the sqlite3 shell's CSV import, for comparison.
    if Command::new("sqlite3").arg("-version").output().is_err() {
        println!("sqlite3 shell not installed: comparison skipped");
        return;
    }
    let csv_path = dir.path().join("rows.csv");
    let mut csv = String::from("participant,visit,analyte,value,minute\n");
    for (_, rows) in &uploads {
        for (p, v, a, value, m) in rows {
            csv.push_str(&format!("{p},{v},{a},{value},{m}\n"));
        }
    }
    std::fs::write(&csv_path, csv).expect("csv");
    let schema = "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; \
        CREATE TABLE r (participant TEXT NOT NULL, visit TEXT NOT NULL, analyte TEXT NOT NULL, value REAL NOT NULL, minute INTEGER NOT NULL) STRICT;";
    let bulk_db = dir.path().join("bulk.db");
    let start = Instant::now();
    let status = Command::new("sqlite3")
        .arg(&bulk_db)
        .arg(schema)
        .arg(".mode csv")
        .arg(format!(".import --skip 1 {} r", csv_path.display()))
        .status()
        .expect("sqlite3");
    let bulk = start.elapsed().as_secs_f64();
    assert!(status.success());
    println!(
        "sqlite3 .import, one bulk load: {} rows in {bulk:.3} s = {:.0} rows/s",
        2 * files,
        2.0 * files as f64 / bulk
    );

    // One durable transaction per file, as the pipeline commits.
    let per_file_db = dir.path().join("per-file.db");
    let mut script = format!("{schema}\n");
    for (_, rows) in &uploads {
        script.push_str("BEGIN IMMEDIATE;\n");
        for (p, v, a, value, m) in rows {
            script.push_str(&format!("INSERT INTO r VALUES ('{p}','{v}','{a}',{value},{m});\n"));
        }
        script.push_str("COMMIT;\n");
    }
    let script_path = dir.path().join("per-file.sql");
    std::fs::write(&script_path, script).expect("script");
    let start = Instant::now();
    let status = Command::new("sqlite3")
        .arg(&per_file_db)
        .arg(format!(".read {}", script_path.display()))
        .status()
        .expect("sqlite3");
    let per_file = start.elapsed().as_secs_f64();
    assert!(status.success());
    println!(
        "sqlite3, one durable transaction per file: {files} files in {per_file:.2} s = {:.0} files/s",
        files as f64 / per_file
    );
    println!("labfeed / sqlite3 per-file time ratio: {:.2}x; / bulk: {:.1}x", seconds / per_file, seconds / bulk);

    // The rows labfeed actually wrote (raw copies, receipts, messages,
    // observations, results, processing and audit rows), bulk-loaded by the
    // sqlite3 shell into an empty database with the same schema.
    let tables =
        ["raw", "receipt", "processing", "message", "participant", "visit", "observation", "result", "audit_log"];
    // The columns stored (generated ones, computed on reading, left out).
    let stored = |table: &str| {
        let columns = Command::new("sqlite3")
            .arg(&database)
            .arg(format!("SELECT group_concat(name, ', ') FROM pragma_table_info('{table}')"))
            .output()
            .expect("columns")
            .stdout;
        String::from_utf8_lossy(&columns).trim().to_owned()
    };
    let mut import = String::from(".mode csv\n.bail on\n");
    let mut rows = 0usize;
    for table in tables {
        let dump = Command::new("sqlite3")
            .arg("-csv")
            .arg(&database)
            .arg(format!("SELECT {} FROM {table}", stored(table)))
            .output()
            .expect("sqlite3 dump");
        rows += dump.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        let path = dir.path().join(format!("{table}.csv"));
        std::fs::write(&path, &dump.stdout).expect("dump");
        import.push_str(&format!(".import {} {table}\n", path.display()));
    }
    // Plain tables with the same columns: CSV carries text, and the shell's
    // import turns NULL into '' (which labfeed's CHECK constraints refuse).
    let mut setup = String::from("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;\n");
    for table in tables {
        setup.push_str(&format!("CREATE TABLE {table} ({});\n", stored(table)));
    }
    let same_db = dir.path().join("same-rows.db");
    let setup_path = dir.path().join("setup.sql");
    std::fs::write(&setup_path, setup).expect("setup");
    assert!(
        Command::new("sqlite3")
            .arg(&same_db)
            .arg(format!(".read {}", setup_path.display()))
            .status()
            .expect("setup")
            .success()
    );
    let import_path = dir.path().join("import.sql");
    std::fs::write(&import_path, format!("BEGIN;\n{import}COMMIT;\n")).expect("import script");
    let start = Instant::now();
    let status = Command::new("sqlite3")
        .arg(&same_db)
        .arg(format!(".read {}", import_path.display()))
        .status()
        .expect("sqlite3 import");
    let same = start.elapsed().as_secs_f64();
    assert!(status.success());
    println!("sqlite3 .import of the same {rows} rows labfeed wrote, one bulk load: {same:.2} s");
    println!("labfeed / sqlite3 bulk load of the same rows: {:.2}x", seconds / same);
}

/// Database bytes per result after a checkpoint (WAL folded in), in all and
/// for the audit log's rows alone (their column bytes).
fn print_database_size(database: &Path, results: u64) {
    let conn = rusqlite::Connection::open(database).expect("reopen");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("checkpoint");
    let audit: i64 = conn
        .query_row(
            "SELECT coalesce(sum(length(at) + length(actor) + length(action) + length(entity) \
             + coalesce(length(entity_id), 0) + length(detail) + length(prev_hash) + length(hash) + 8), 0) FROM audit_log",
            [],
            |r| r.get(0),
        )
        .expect("audit size");
    // Where the bytes are, table and index by table and index (SQLite's dbstat).
    if let Ok(mut stmt) = conn.prepare("SELECT name, sum(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC LIMIT 12") {
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)));
        let parts: Vec<String> = rows
            .map(|rows| {
                rows.flatten().map(|(name, size)| format!("{name} {:.0}", size as f64 / results as f64)).collect()
            })
            .unwrap_or_default();
        println!("bytes per result by table and index: {}", parts.join(", "));
    }
    drop(conn);
    // `LABFEED_BENCH_KEEP=DIR`: keep a copy of the database to look into.
    if let Some(keep) = std::env::var_os("LABFEED_BENCH_KEEP") {
        let name = database.file_name().expect("a file name");
        std::fs::copy(database, Path::new(&keep).join(name)).expect("keep a copy");
    }
    let bytes = std::fs::metadata(database).expect("database size").len();
    println!(
        "database: {bytes} bytes = {:.0} bytes per result; audit rows {:.0} bytes per result",
        bytes as f64 / results as f64,
        audit as f64 / results as f64
    );
}

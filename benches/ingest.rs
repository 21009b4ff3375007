//! Ingest throughput: a backlog of 10,000 small result files through the
//! real pipeline into a real SQLite file with durable commits (WAL,
//! synchronous=FULL), reported as files/s and results/s. It also loads the
//! same rows with the `sqlite3` shell's CSV import for comparison, when the
//! shell is installed. Run:
//!
//! ```text
//! cargo bench --bench ingest            # 10,000 files
//! LABFEED_BENCH_FILES=2000 cargo bench --bench ingest
//! ```

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use labfeed::ingest::{Delivery, ingest_batch};
use labfeed::store::{Participant, Source, Store, Visit};
use labfeed::study::config::Config;

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

/// A study database at `database` with `participants` participants of five
/// visits each, and the configuration that points at it.
fn study(database: &Path, participants: usize) -> (Config, Store) {
    let config_text = include_str!("../config/labfeed.example.toml")
        .replace("/var/lib/labfeed/labfeed.db", database.to_str().expect("utf-8 path"));
    let config = Config::from_toml(&config_text, Path::new("bench.toml")).expect("config");
    let mut store = Store::open(database).expect("open");
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
    (config, store)
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

/// The same pipeline on visit-sized uploads (a backlog of batch uploads).
fn bench_visit_uploads(dir: &Path, visits: usize) {
    let database = dir.join("visits.db");
    let (config, mut store) = study(&database, visits / 5);
    let uploads: Vec<String> = (0..visits).map(visit_upload).collect();
    let (accepted, seconds) = ingest_all(&mut store, &config, uploads.iter().map(String::as_str), "visit");
    assert_eq!(accepted, 14 * visits as u64, "every result accepted");
    println!(
        "labfeed ingest, one visit per file: {visits} files, {accepted} results in {seconds:.2} s = {:.0} results/s",
        accepted as f64 / seconds
    );
    drop(store);
    print_database_size(&database, accepted);
}

fn main() {
    // `cargo test` runs benches in test mode with `--bench` absent; keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let files: usize = std::env::var("LABFEED_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let database = dir.path().join("bench.db");
    let (config, mut store) = study(&database, files / 35);

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
    bench_visit_uploads(dir.path(), files / 7);

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
    let mut import = String::from(".mode csv\n.bail on\n");
    let mut rows = 0usize;
    for table in tables {
        let dump = Command::new("sqlite3")
            .arg("-csv")
            .arg(&database)
            .arg(format!("SELECT * FROM {table}"))
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
        let columns = Command::new("sqlite3")
            .arg(&database)
            .arg(format!("SELECT group_concat(name, ', ') FROM pragma_table_info('{table}')"))
            .output()
            .expect("columns")
            .stdout;
        setup.push_str(&format!("CREATE TABLE {table} ({});\n", String::from_utf8_lossy(&columns).trim()));
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
    let bytes = std::fs::metadata(database).expect("database size").len();
    println!(
        "database: {bytes} bytes = {:.0} bytes per result; audit rows {:.0} bytes per result",
        bytes as f64 / results as f64,
        audit as f64 / results as f64
    );
}

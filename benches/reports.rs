//! The study outputs on a large study: `report auc` (text, csv, html),
//! `report mismatches` (text, csv, html) and `export results` / `export lb`,
//! each the whole command as lab staff run it: the release binary, reading a
//! real SQLite file, writing with `--output`. Reports wall time (median of
//! three runs), output size and peak RSS (from `/usr/bin/time`, when
//! installed).
//!
//! The study is built the honest way: generated HL7 ORU^R01 (one message per
//! visit, central lab) and ASTM (cobas e411 reruns, unknown tubes) pushed
//! through `ingest_batch` into the database, so the mismatches are the
//! pipeline's own. Run:
//!
//! ```text
//! cargo bench --bench reports                                 # 200 participants x 5 visits
//! LABFEED_BENCH_PARTICIPANTS=50 cargo bench --bench reports
//! LABFEED_BENCH_KEEP=1 cargo bench --bench reports           # keep the study, e.g. for perf
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jiff::civil::DateTime;
use labfeed::ingest::{Delivery, ingest_batch};
use labfeed::store::{Participant, Source, Store, Visit};
use labfeed::study::config::Config;

const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];
const VISITS: [(&str, i64); 5] = [("V0", 0), ("V1", 91), ("V2", 182), ("V3", 364), ("V4", 728)];
const CPEP: [f64; 7] = [0.30, 0.32, 0.55, 0.85, 1.10, 0.95, 0.80];
const GLUC: [f64; 7] = [5.2, 5.4, 7.8, 9.6, 10.4, 9.0, 7.5];

fn meal_start(p: usize, days: i64) -> DateTime {
    let first = jiff::civil::date(2023, 1, 2).at(8, 30, 0, 0);
    first.checked_add(jiff::Span::new().days(days + p as i64)).expect("date in range")
}

fn hl7_time(t: DateTime) -> String {
    t.strftime("%Y%m%d%H%M").to_string()
}

/// One visit's MMTT from the central lab, with the irregularities of a real
/// study decided by the visit's number `k`: a late draw (OUT_OF_WINDOW), a
/// high fasting glucose (PRETEST_GLUCOSE), a preliminary result
/// (NOT_FINAL), an implausible value, an unknown unit, a comment instead of
/// a value (NON_NUMERIC), an extra 45-min tube (UNSCHEDULED_TIMEPOINT), a
/// tube never sent (MISSING_RESULT) and values below the LLOQ.
fn visit_message(p: usize, v: usize, start: DateTime) -> String {
    let k = p * VISITS.len() + v;
    let code = format!("U{p:03}");
    let visit = VISITS[v].0;
    let scale = 0.5 + (p % 10) as f64 / 10.0;
    let resulted = hl7_time(start.checked_add(jiff::Span::new().days(1)).expect("date"));
    let mut m = format!(
        "MSH|^~\\&|CENTRALLAB|UAS-KEM|LABFEED|BENCH|{resulted}||ORU^R01^ORU_R01|B{k:05}|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
PID|1||{code}^^^BENCH^PI\r"
    );
    let mut minutes: Vec<i32> = MINUTES.to_vec();
    if k % 23 == 2 {
        minutes.retain(|&n| n != 90);
    }
    if k % 43 == 19 {
        minutes.push(45);
    }
    for (i, &minute) in minutes.iter().enumerate() {
        let at = MINUTES.iter().position(|&n| n == minute).unwrap_or(4);
        let late = if k % 13 == 3 && minute == 30 { 10 } else { 0 };
        let drawn = hl7_time(start.checked_add(jiff::Span::new().minutes(i64::from(minute + late))).expect("date"));
        let mut cpep_type = "NM";
        let mut cpep = format!("{:.3}", CPEP[at] * scale + (k % 7) as f64 * 0.01);
        let mut cpep_status = "F";
        let mut gluc = format!("{:.1}", GLUC[at] + (k % 5) as f64 * 0.1);
        let mut gluc_unit = "mmol/L";
        if k % 11 == 6 && minute == -10 {
            cpep_type = "SN";
            cpep = "<^0.010".into();
        }
        if k % 17 == 5 && minute == 0 {
            gluc = "12.5".into();
        }
        if k % 29 == 7 && minute == 60 {
            cpep_status = "P";
        }
        if k % 31 == 11 && minute == 90 {
            cpep = "45.0".into();
        }
        if k % 37 == 13 && minute == 15 {
            gluc_unit = "mmol/mol";
        }
        if k % 41 == 17 && minute == 120 {
            cpep_type = "ST";
            cpep = "HEMOLYZED, NEW SAMPLE REQUESTED".into();
        }
        m.push_str(&format!(
            "OBR|{n}||{code}-{visit}-T{minute}^CENTRALLAB|MMTT^MMTT C-peptide and glucose^L|||{drawn}|||||||{drawn}||||||||{resulted}|||F\r\
OBX|1|{cpep_type}|1986-9^C peptide^LN||{cpep}|nmol/L^^UCUM|0.37-1.47|N|||{cpep_status}|||{drawn}\r\
OBX|2|NM|14749-6^Glucose^LN||{gluc}|{gluc_unit}^^UCUM|4.0-6.0|N|||F|||{drawn}\r",
            n = i + 1
        ));
    }
    m
}

/// An e411 upload of one C-peptide tube (a rerun, or another study's tube).
fn astm_upload(sample: &str, value: &str) -> String {
    format!(
        "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
P|1\r\
O|1|{sample}|0305^5004^5^^S1^SC|^^^CPEP|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP|{value}|nmol/L||N||F||ADMIN|20260302100000|20260302101000|E1\r\
L|1|N\r"
    )
}

/// Participants, visits with meal starts, and the deliveries: first the
/// visits' messages and the unknown tubes, then (a later batch) the reruns.
fn build_study(database: &Path, config: &Config, participants: usize) {
    let mut store = Store::open(database).expect("open");
    store
        .write(|tx| {
            for p in 0..participants {
                let code = format!("U{p:03}");
                tx.upsert_participant(&Participant { code: code.clone(), site: None })?;
                for (visit, days) in VISITS {
                    let meal_start = Some(meal_start(p, days));
                    tx.upsert_visit(&Visit {
                        participant: code.clone(),
                        visit: visit.into(),
                        meal_start: meal_start.map(Into::into),
                    })?;
                }
            }
            Ok(())
        })
        .expect("study data");
    let mut first: Vec<(String, String)> = Vec::new();
    for p in 0..participants {
        for (v, (visit, days)) in VISITS.iter().enumerate() {
            first.push((format!("central/{p:03}-{visit}.hl7"), visit_message(p, v, meal_start(p, *days))));
        }
    }
    for n in 0..participants / 5 {
        first.push((format!("e411/unknown-{n}.astm"), astm_upload(&format!("K{}-{n:02}", 1100 + n), "0.74")));
    }
    let mut reruns: Vec<(String, String)> = Vec::new();
    for k in (0..participants * VISITS.len()).filter(|k| k % 19 == 4) {
        let sample = format!("U{:03}-{}-T60", k / VISITS.len(), VISITS[k % VISITS.len()].0);
        reruns.push((format!("e411/rerun-{k}.astm"), astm_upload(&sample, "2.345")));
    }
    for batch in [first, reruns] {
        for chunk in batch.chunks(500) {
            let deliveries: Vec<Delivery<'_>> = chunk
                .iter()
                .map(|(origin, text)| Delivery {
                    bytes: text.as_bytes(),
                    source: Source::Ingest,
                    origin: origin.clone(),
                    instrument: None,
                    received_at: jiff::Timestamp::now(),
                })
                .collect();
            for summary in ingest_batch(&mut store, config, &deliveries).expect("ingest") {
                assert_eq!(summary.errors, 0, "{summary:?}");
            }
        }
    }
}

/// Median wall time, output size and peak RSS (KiB) of `labfeed ARGS`.
struct Measured {
    wall: Duration,
    bytes: u64,
    rss_kib: Option<u64>,
}

fn measure(binary: &Path, config: &Path, args: &[&str], output: &Path, runs: usize) -> Measured {
    let time = Path::new("/usr/bin/time");
    let rss_file = output.with_extension("rss");
    let mut walls = Vec::new();
    let mut rss = None;
    for _ in 0..runs {
        let mut cmd = if time.exists() {
            let mut c = Command::new(time);
            c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(binary);
            c
        } else {
            Command::new(binary)
        };
        cmd.arg("--config").arg(config).args(args).arg("--output").arg(output).env_remove("LABFEED_CONFIG");
        let start = Instant::now();
        let out = cmd.output().expect("run labfeed");
        walls.push(start.elapsed());
        assert!(out.status.success(), "labfeed {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        if let Ok(text) = std::fs::read_to_string(&rss_file) {
            let kib: Option<u64> = text.trim().lines().last().and_then(|l| l.trim().parse().ok());
            rss = rss.max(kib);
        }
    }
    walls.sort();
    let bytes = std::fs::metadata(output).expect("output written").len();
    Measured { wall: walls[walls.len() / 2], bytes, rss_kib: rss }
}

fn main() {
    // `cargo test` runs benches in test mode with `--bench` absent; keep that instant.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let participants: usize =
        std::env::var("LABFEED_BENCH_PARTICIPANTS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_labfeed"));
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("lib");
    std::fs::create_dir(&root).expect("lib");
    let config_text =
        include_str!("../config/labfeed.example.toml").replace("/var/lib/labfeed", root.to_str().expect("utf-8"));
    let config_path = dir.path().join("labfeed.toml");
    std::fs::write(&config_path, &config_text).expect("config");
    let config = Config::from_toml(&config_text, &config_path).expect("config");
    let database = root.join("labfeed.db");

    let start = Instant::now();
    build_study(&database, &config, participants);
    let built = start.elapsed().as_secs_f64();

    // What the study holds, from the store: results and mismatches by code.
    let store = Store::open_read_only(&database).expect("open");
    let (results, by_code) = store
        .read(|r| {
            let mut by_code: BTreeMap<&'static str, usize> = BTreeMap::new();
            for m in r.mismatch_report(false)? {
                *by_code.entry(m.mismatch.code.as_str()).or_default() += 1;
            }
            Ok((r.current_results()?.len(), by_code))
        })
        .expect("read");
    drop(store);
    let stored: usize = by_code.values().sum();
    let codes: Vec<String> = by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
    println!(
        "study: {participants} participants x {} visits, {results} current results, {stored} open stored mismatches ({}); built by ingest_batch in {built:.1} s",
        VISITS.len(),
        codes.join(", ")
    );
    assert!(by_code.len() >= 8, "mismatches of many codes: {codes:?}");

    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("out");
    let commands: [(&str, &[&str]); 8] = [
        ("report auc", &["report", "auc"]),
        ("report auc --format csv", &["report", "auc", "--format", "csv"]),
        ("report auc --format html", &["report", "auc", "--format", "html"]),
        ("report mismatches", &["report", "mismatches"]),
        ("report mismatches --format csv", &["report", "mismatches", "--format", "csv"]),
        ("report mismatches --format html", &["report", "mismatches", "--format", "html"]),
        ("export results", &["export", "results"]),
        ("export lb", &["export", "lb"]),
    ];
    println!("| command | wall time (median of 3) | output | peak RSS |");
    println!("|---|---|---|---|");
    for (i, (name, args)) in commands.iter().enumerate() {
        let output = out_dir.join(format!("{i}.out"));
        let m = measure(&binary, &config_path, args, &output, 3);
        let rss = m.rss_kib.map(|k| format!("{:.1} MiB", k as f64 / 1024.0)).unwrap_or_else(|| "-".into());
        println!(
            "| `{name}` | {:.0} ms | {:.2} MiB | {rss} |",
            m.wall.as_secs_f64() * 1000.0,
            m.bytes as f64 / (1024.0 * 1024.0)
        );
    }
    if let Ok(csv) = std::fs::read_to_string(out_dir.join("4.out")) {
        println!(
            "open mismatches listed: {} (MISSING_RESULT {})",
            csv.lines().count() - 1,
            csv.matches(",MISSING_RESULT,").count()
        );
    }
    if let Ok(html) = std::fs::read_to_string(out_dir.join("5.out")) {
        println!("mismatches page: {} curves", html.matches("<svg").count());
    }
    if let Ok(html) = std::fs::read_to_string(out_dir.join("2.out")) {
        println!("AUC page: {} curves", html.matches("<svg").count());
    }
    if std::env::var_os("LABFEED_BENCH_KEEP").is_some() {
        println!("study kept for profiling: {}", dir.keep().join("labfeed.toml").display());
    }
}

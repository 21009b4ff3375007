//! astm integration tests.

use std::path::PathBuf;

use labfeed::astm::parse_file;
use labfeed::model::{MessageOutcome, ParseOptions};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/astm")
}

fn parse_bytes(bytes: &[u8], opts: ParseOptions) -> Vec<MessageOutcome> {
    let mut out = Vec::new();
    parse_file(bytes, &opts, &mut |m| out.push(m));
    out
}

#[test]
#[ignore]
fn dump_all() {
    let mut names: Vec<_> = std::fs::read_dir(fixture_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for path in names {
        let bytes = std::fs::read(&path).unwrap();
        println!("=== {}", path.file_name().unwrap().to_string_lossy());
        for m in parse_bytes(&bytes, ParseOptions::default()) {
            match m {
                Ok(p) => {
                    println!(
                        "  OK #{} span {:?} sender {:?} ctl {:?} warnings {:?}",
                        p.number, p.span, p.sender, p.control_id, p.warnings
                    );
                    for r in p.results {
                        println!(
                            "    {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} qc={} c={:?} off={} col={:?} res={:?}",
                            r.sample_id,
                            r.patient_id,
                            r.test_code,
                            r.value,
                            r.comparator,
                            r.numeric.map(|n| n.to_string()),
                            r.unit,
                            r.flags,
                            r.status,
                            r.sender,
                            r.qc,
                            r.comments,
                            r.offset,
                            r.collected_at.map(|t| t.to_iso()),
                            r.resulted_at.map(|t| t.to_iso())
                        );
                    }
                }
                Err(e) => println!("  ERR {:?}", e),
            }
        }
    }
}

fn generated_upload(target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target + 4096);
    let mut n = 0u32;
    while out.len() < target {
        let cpep = if n.is_multiple_of(11) { "<0.010".to_owned() } else { format!("{}.{:03}", n % 3, n % 1000) };
        out.extend_from_slice(
            format!(
                "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\rP|1\r\
O|1|U{:03}-V{}-T030|{n}^0012^2^^S1^SC|^^^CPEP^1\\^^^GLUC^1|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP/1/not|{cpep}|nmol/L||N||F||ADMIN||20260302100000|20260302101000|E1\rC|1|I|0|I\r\
R|2|^^^GLUC/1/not|{}.{}|mmol/L||N||F||ADMIN||20260302100000|20260302101100|E1\rC|1|I|0|I\rL|1|N\r",
                100 + n / 35,
                (n / 7) % 5,
                4 + n % 9,
                n % 10
            )
            .as_bytes(),
        );
        n += 1;
    }
    out
}

/// Not a test: `cargo test --release --test integration astm::throughput -- --ignored --nocapture`
/// prints MB/s for plain records and for the same uploads in frames.
#[test]
#[ignore]
fn throughput() {
    let mb = std::env::var("ASTM_BENCH_MB").ok().and_then(|v| v.parse().ok()).unwrap_or(48);
    let rounds = if mb < 8 { 1 } else { 9 };
    let data = generated_upload(mb << 20);
    let mut framed = Vec::new();
    for msg in data.split_inclusive(|&b| b == b'\r').collect::<Vec<_>>().chunk_by(|_, b| !b.starts_with(b"H|")) {
        framed.push(0x05);
        for f in labfeed::astm::encode_frames(&msg.concat(), 240) {
            framed.extend(f);
        }
        framed.push(0x04);
    }
    let only = std::env::var("ASTM_BENCH").unwrap_or_default();
    for (name, bytes) in [("records", &data), ("frames", &framed)] {
        if !only.is_empty() && only != name {
            continue;
        }
        let mut best = f64::MAX;
        for _ in 0..rounds {
            let t = std::time::Instant::now();
            let mut results = 0;
            let mut errors = 0;
            parse_file(bytes, &ParseOptions::default(), &mut |m| match m {
                Ok(p) => results += p.results.len(),
                Err(_) => errors += 1,
            });
            best = best.min(t.elapsed().as_secs_f64());
            assert!(results > 0 && errors == 0);
        }
        println!("{name}: {} MB, best {best:.3}s = {:.0} MB/s", bytes.len() >> 20, bytes.len() as f64 / best / 1e6);
    }
}

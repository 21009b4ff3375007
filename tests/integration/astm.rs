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

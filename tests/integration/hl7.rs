//! hl7 integration tests.

use labfeed::hl7::parse_file;
use labfeed::model::{MessageOutcome, ParseOptions};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/hl7/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn parse(input: &[u8]) -> Vec<MessageOutcome> {
    let mut all = Vec::new();
    parse_file(input, &ParseOptions::default(), &mut |o| all.push(o));
    all
}

#[test]
fn dump() {
    let mut names: Vec<String> = std::fs::read_dir(format!("{}/fixtures/hl7", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".hl7"))
        .collect();
    names.sort();
    for name in names {
        println!("===== {name}");
        for o in parse(&fixture(&name)) {
            match o {
                Ok(m) => {
                    println!(
                        "  #{} span={:?} sender={:?} ctl={:?} results={}",
                        m.number,
                        m.span,
                        m.sender,
                        m.control_id,
                        m.results.len()
                    );
                    for w in &m.warnings {
                        println!("    W@{} {}", w.offset, w.text);
                    }
                    for r in m.results.iter().take(3) {
                        println!(
                            "    R@{} sample={:?} pat={:?} test={:?} value={:?} cmp={:?} num={:?} unit={:?} flags={:?} st={:?} coll={:?} res={:?} qc={} comments={:?}",
                            r.offset,
                            r.sample_id,
                            r.patient_id,
                            r.test_code,
                            r.value,
                            r.comparator,
                            r.numeric.as_ref().map(|n| n.to_string()),
                            r.unit,
                            r.flags,
                            r.status,
                            r.collected_at.map(|t| t.to_iso()),
                            r.resulted_at.map(|t| t.to_iso()),
                            r.qc,
                            r.comments
                        );
                    }
                }
                Err(e) => println!("  #{} ERR @{} span={:?}: {}", e.number, e.offset, e.span, e.text),
            }
        }
    }
}

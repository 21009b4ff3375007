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

/// Generated central-lab traffic like the lead's benchmark: one ORU^R01 per
/// MMTT draw with a C-peptide (SN) and a glucose (NM) result.
fn generated_oru(target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target + 4096);
    let mut n = 0u32;
    while out.len() < target {
        let minute = [-10i32, 0, 15, 30, 60, 90, 120][(n % 7) as usize];
        let mm = 8 * 60 + 12 + minute;
        let (hh, mi) = (mm / 60, mm % 60);
        let cpep = if n.is_multiple_of(11) { "<^0.02".to_owned() } else { format!("^{}.{:02}", n % 3, n % 100) };
        let text = format!(
            "MSH|^~\\&|CENTRALLAB|CLAB^2.16.840.1.113883.3.9999.1^ISO|STUDYDB|T1D-TRIAL|20260312154500-0800||ORU^R01^ORU_R01|CL-{n:08}|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
PID|1||U{p:03}^^^TRIAL&2.16.840.1.113883.3.9999.2&ISO^PI||^^^^^^S||2009|M\r\
ORC|RE|U{p:03}-T{minute:03}^STUDY|A{n:010}^CENTRALLAB\r\
OBR|1|U{p:03}-T{minute:03}^STUDY|A{n:010}^CENTRALLAB|MMTT^MMTT {minute} min^L|||20260311{hh:02}{mi:02}00-0800|||||||20260312090100-0800||||||||20260312154400-0800|||F\r\
OBX|1|SN|1986-9^C peptide [Mass/volume] in Serum or Plasma^LN^CPEP^C-Peptide^L||{cpep}|ng/mL^^UCUM|0.8-3.5|N|||F|||20260311{hh:02}{mi:02}00-0800|||ECLIA|E801-1^CENTRALLAB|20260312120500-0800\r\
OBX|2|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU^Glucose^L||{g}|mg/dL^^UCUM|70-99|N|||F|||20260311{hh:02}{mi:02}00-0800||||E801-1^CENTRALLAB|20260312121000-0800\r\
NTE|1|L|Specimen received at room temperature.\r\
SPM|1|U{p:03}-T{minute:03}&STUDY^A{n:010}-01&CENTRALLAB||SER^Serum^HL70487|||||||P^Patient^HL70369||||||20260311{hh:02}{mi:02}00-0800|20260312090100-0800\r",
            p = 100 + n / 35,
            g = 70 + n % 180,
        );
        out.extend_from_slice(text.as_bytes());
        n += 1;
    }
    out
}

/// Throughput on generated ORU^R01 (run with `cargo test --release -- --ignored`).
#[test]
#[ignore = "timing; run in release"]
fn throughput_on_generated_oru_is_linear_and_fast() {
    let mut speeds = Vec::new();
    for size in [8usize << 20, 32 << 20, 64 << 20] {
        let data = generated_oru(size);
        let mut best = f64::MAX;
        for _ in 0..3 {
            let started = std::time::Instant::now();
            let (mut messages, mut results, mut warnings) = (0, 0, 0);
            parse_file(&data, &ParseOptions::default(), &mut |o| {
                let m = o.expect("generated messages parse");
                messages += 1;
                results += m.results.len();
                warnings += m.warnings.len();
            });
            best = best.min(started.elapsed().as_secs_f64());
            assert_eq!(warnings, 0, "clean messages must not warn");
            assert_eq!(results, messages * 2);
        }
        let mb_per_s = data.len() as f64 / best / 1e6;
        println!("{} MB: {mb_per_s:.0} MB/s", data.len() >> 20);
        speeds.push(mb_per_s);
    }
    // Linear: the per-byte speed does not fall with size.
    let (small, large) = (speeds.first().copied().unwrap_or(0.0), speeds.last().copied().unwrap_or(0.0));
    assert!(large > small * 0.7, "throughput falls with size: {speeds:?}");
}

/// One parse of 4 MB of generated ORU (for instruction-count profiling).
#[test]
#[ignore = "profiling helper"]
fn parse_generated_oru_once() {
    let data = generated_oru(4 << 20);
    let mut results = 0;
    parse_file(&data, &ParseOptions::default(), &mut |o| results += o.map_or(0, |m| m.results.len()));
    assert!(results > 0);
}

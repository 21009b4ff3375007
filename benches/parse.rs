//! `parse --format summary` throughput on large generated uploads.
//!
//! Generates realistic MMTT traffic (HL7 ORU^R01 from a central lab; ASTM
//! uploads from an immunoassay analyzer, as plain records and as E1381 frames
//! captured from the wire) at several sizes, so both the speed and its
//! linearity in input size show: in process on one core (`parse_summary`)
//! and on every core (`parse_summary_all_cores`), then the whole command as
//! users run it, process start and file read included, on a 48 MB file
//! (`parse_command`, the release binary). Run:
//!
//! ```text
//! cargo bench --bench parse
//! LABFEED_BENCH_WRITE=target/bench-corpus cargo bench --bench parse -- --test   # also writes 64 MB files
//! ```

use std::hint::black_box;
use std::io::sink;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use labfeed::cli::parse::{OutputFormat, print_file};
use labfeed::model::ParseOptions;

const MINUTES: [i32; 7] = [-10, 0, 15, 30, 60, 90, 120];
const MB: usize = 1 << 20;

/// One HL7 ORU^R01 per draw: C-peptide (SN, sometimes censored) and glucose.
fn hl7_corpus(target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target + 4096);
    let mut n = 0u32;
    while out.len() < target {
        let participant = 100 + n / 35;
        let visit = (n / 7) % 5;
        let minute = MINUTES[(n % 7) as usize];
        let mm = 8 * 60 + 12 + minute.max(-10);
        let (hh, mi) = (mm / 60, mm % 60);
        let cpep = if n.is_multiple_of(11) { "<^0.02".to_owned() } else { format!("^{}.{:02}", n % 3, n % 100) };
        let gluc = 70 + n % 180;
        let text = format!(
            "MSH|^~\\&|CENTRALLAB|CLAB^2.16.840.1.113883.3.9999.1^ISO|STUDYDB|T1D-TRIAL|20260312154500-0800||ORU^R01^ORU_R01|CL-{n:08}|P|2.5.1|||NE|NE||UNICODE UTF-8\r\
PID|1||U{participant:03}^^^TRIAL&2.16.840.1.113883.3.9999.2&ISO^PI||^^^^^^S||2009|M\r\
ORC|RE|U{participant:03}-V{visit}-T{minute:03}^STUDY|A{n:010}^CENTRALLAB\r\
OBR|1|U{participant:03}-V{visit}-T{minute:03}^STUDY|A{n:010}^CENTRALLAB|MMTT^MMTT {minute} min^L|||20260311{hh:02}{mi:02}00-0800|||||||20260312090100-0800||||||||20260312154400-0800|||F\r\
OBX|1|SN|1986-9^C peptide [Mass/volume] in Serum or Plasma^LN^CPEP^C-Peptide^L||{cpep}|ng/mL^^UCUM|0.8-3.5|N|||F|||20260311{hh:02}{mi:02}00-0800|||ECLIA|E801-1^CENTRALLAB|20260312120500-0800\r\
OBX|2|NM|2345-7^Glucose [Mass/volume] in Serum or Plasma^LN^GLU^Glucose^L||{gluc}|mg/dL^^UCUM|70-99|N|||F|||20260311{hh:02}{mi:02}00-0800||||E801-1^CENTRALLAB|20260312121000-0800\r\
NTE|1|L|Specimen received at room temperature.\r\
SPM|1|U{participant:03}-V{visit}-T{minute:03}&STUDY^A{n:010}-01&CENTRALLAB||SER^Serum^HL70487|||||||P^Patient^HL70369||||||20260311{hh:02}{mi:02}00-0800|20260312090100-0800\r"
        );
        out.extend_from_slice(text.as_bytes());
        n += 1;
    }
    out
}

/// ASTM E1394 result uploads, one H…L message per sample (C-peptide and
/// glucose with Roche-style C records).
fn astm_records(target: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(target + 4096);
    let mut n = 0u32;
    while out.len() < target {
        let participant = 100 + n / 35;
        let visit = (n / 7) % 5;
        let minute = MINUTES[(n % 7) as usize];
        let cpep = if n.is_multiple_of(11) { "<0.010".to_owned() } else { format!("{}.{:03}", n % 3, n % 1000) };
        let text = format!(
            "H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1|20260302101500\r\
P|1\r\
O|1|U{participant:03}-V{visit}-T{minute:03}|{n}^0012^2^^S1^SC|^^^CPEP^1\\^^^GLUC^1|R||20260302084500||||N||||1|||||||20260302101200|||F\r\
R|1|^^^CPEP/1/not|{cpep}|nmol/L||N||F||ADMIN||20260302100000|20260302101000|E1\r\
C|1|I|0|I\r\
R|2|^^^GLUC/1/not|{}.{}|mmol/L||N||F||ADMIN||20260302100000|20260302101100|E1\r\
C|1|I|0|I\r\
L|1|N\r",
            4 + n % 9,
            n % 10
        );
        out.extend_from_slice(text.as_bytes());
        n += 1;
    }
    out
}

/// The same uploads as captured from an E1381 link: ENQ, frames of at most
/// 240 text characters with checksums, EOT, one session per message.
fn astm_frames(target: usize) -> Vec<u8> {
    let records = astm_records(target * 97 / 100);
    let mut out = Vec::with_capacity(target + 4096);
    for message in records.split_inclusive(|&b| b == b'\r').collect::<Vec<_>>().chunk_by(|_, b| !b.starts_with(b"H|")) {
        let text: Vec<u8> = message.concat();
        out.push(0x05);
        for frame in labfeed::astm::frame::encode_frames(&text, 240) {
            out.extend_from_slice(&frame);
        }
        out.push(0x04);
    }
    out
}

fn summary(name: &str, data: &[u8], threads: usize) -> usize {
    let opts = ParseOptions { threads, ..ParseOptions::default() };
    let counts = print_file(name, data, &opts, OutputFormat::Summary, &mut sink(), &mut sink()).unwrap_or_default();
    counts.results
}

fn bench_parse(c: &mut Criterion) {
    if let Ok(dir) = std::env::var("LABFEED_BENCH_WRITE") {
        std::fs::create_dir_all(&dir).ok();
        for (name, data) in [
            ("oru-64mb.hl7", hl7_corpus(64 * MB)),
            ("upload-64mb.astm", astm_records(64 * MB)),
            ("upload-64mb.frames", astm_frames(64 * MB)),
        ] {
            std::fs::write(format!("{dir}/{name}"), data).ok();
        }
    }
    type Generator = fn(usize) -> Vec<u8>;
    let corpora: [(&str, Generator); 3] =
        [("hl7_oru_r01", hl7_corpus), ("astm_records", astm_records), ("astm_frames", astm_frames)];
    let cores = labfeed::parallel::cores();
    for (group_name, threads) in [("parse_summary", 1), ("parse_summary_all_cores", cores)] {
        let mut group = c.benchmark_group(group_name);
        group.sample_size(10);
        for (kind, generate) in corpora {
            for size_mb in [4, 16, 48] {
                let data = generate(size_mb * MB);
                assert!(summary(kind, &data, threads) > 0, "{kind}: the generated corpus must yield results");
                group.throughput(Throughput::Bytes(data.len() as u64));
                group.bench_with_input(BenchmarkId::new(kind, format!("{size_mb}MB")), &data, |b, data| {
                    b.iter(|| summary(kind, black_box(data), threads))
                });
            }
        }
        group.finish();
    }
    // The whole command on a file in the page cache, as `time labfeed parse` shows it.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut group = c.benchmark_group("parse_command");
    group.sample_size(10);
    for (kind, generate) in corpora {
        let data = generate(48 * MB);
        let path = dir.path().join(kind);
        std::fs::write(&path, &data).expect("writing the corpus");
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_with_input(BenchmarkId::new(kind, "48MB"), &path, |b, path| {
            b.iter(|| {
                let run = std::process::Command::new(env!("CARGO_BIN_EXE_labfeed"))
                    .args(["parse", "--format", "summary"])
                    .arg(path)
                    .output()
                    .expect("running labfeed");
                assert!(run.status.success(), "{kind}: {}", String::from_utf8_lossy(&run.stderr));
                run.stdout.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);

//! `labfeed run` with a `[[listen]]` MLLP listener, driven over loopback TCP
//! the way lab middleware would: acknowledgements after the commit, AR for
//! what is not HL7, duplicates acknowledged and stored once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::support::{TempStudy, csv_rows};

struct Daemon {
    study: TempStudy,
    child: Child,
    address: String,
}

impl Daemon {
    fn start() -> Daemon {
        // A free loopback port for the listener.
        let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let study = TempStudy::new(&[("127.0.0.1:5001", &address)]);
        let csv = study.file("participants.csv", "participant\nU07\n");
        assert!(study.run(&["import", "participants", csv.to_str().unwrap()]).status.success());
        let log = std::fs::File::create(study.dir.path().join("daemon.log")).unwrap();
        let child = study.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&address).is_err() {
            assert!(Instant::now() < deadline, "the listener did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Daemon { study, child, address }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(&self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream
    }

    fn exported(&self) -> usize {
        csv_rows(&String::from_utf8_lossy(&self.study.run(&["export", "results"]).stdout)).len() - 1
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let _ = self.child.wait();
    }
}

fn oru(control: &str, value: &str) -> String {
    format!(
        "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20260312154500||ORU^R01^ORU_R01|{control}|P|2.5.1\rPID|1||U07^^^TRIAL^PI\rOBR|1|U07-V4-T30^STUDY||MMTT|||202603020900\rOBX|1|NM|1986-9^C peptide^LN||{value}|nmol/L|||||F\r"
    )
}

fn frame(payload: &str) -> Vec<u8> {
    let mut out = vec![0x0B];
    out.extend_from_slice(payload.as_bytes());
    out.extend_from_slice(&[0x1C, 0x0D]);
    out
}

/// Read one MLLP-framed reply.
fn read_ack(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        stream.read_exact(&mut byte).unwrap();
        reply.push(byte[0]);
        if reply.ends_with(&[0x1C, 0x0D]) {
            break;
        }
    }
    assert_eq!(reply.first(), Some(&0x0B), "an MLLP frame");
    String::from_utf8_lossy(&reply[1..reply.len() - 2]).into_owned()
}

fn msa(ack: &str) -> Vec<String> {
    let segment = ack.split('\r').find(|s| s.starts_with("MSA|")).unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    segment.split('|').map(str::to_owned).collect()
}

#[test]
fn an_hl7_result_is_acknowledged_aa_after_it_is_committed() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(&frame(&oru("CL-1", "0.8"))).unwrap();
    let ack = read_ack(&mut s);
    assert_eq!(msa(&ack)[1..3], ["AA", "CL-1"], "{ack}");
    assert!(ack.starts_with("MSH|^~\\&|STUDYDB|T1D|CENTRALLAB|CLAB|"), "sender and receiver swapped: {ack}");
    // The ACK came after the commit: the result is already exported.
    assert_eq!(d.exported(), 1);
}

#[test]
fn not_hl7_gets_ar_and_the_connection_stays_usable() {
    let d = Daemon::start();
    let mut s = d.connect();
    s.write_all(&frame("hello, this is not HL7")).unwrap();
    let ack = read_ack(&mut s);
    let fields = msa(&ack);
    assert_eq!(fields[1], "AR", "{ack}");
    assert!(fields.get(2).is_none_or(|id| id.is_empty()), "MSA-2 empty: {ack}");
    assert!(ack.contains("\rERR|"), "{ack}");
    // Byte by byte on the same connection: still served.
    for b in frame(&oru("CL-2", "0.6")) {
        s.write_all(&[b]).unwrap();
    }
    assert_eq!(msa(&read_ack(&mut s))[1..3], ["AA", "CL-2"]);
    assert_eq!(d.exported(), 1);
}

#[test]
fn an_exact_duplicate_is_acknowledged_and_stored_once() {
    let d = Daemon::start();
    let mut s = d.connect();
    for _ in 0..2 {
        s.write_all(&frame(&oru("CL-3", "0.9"))).unwrap();
        assert_eq!(msa(&read_ack(&mut s))[1..3], ["AA", "CL-3"]);
    }
    // A second connection sending the same message again.
    let mut other = d.connect();
    other.write_all(&frame(&oru("CL-3", "0.9"))).unwrap();
    assert_eq!(msa(&read_ack(&mut other))[1], "AA");
    assert_eq!(d.exported(), 1);
    let status = String::from_utf8_lossy(&d.study.run(&["status"]).stdout).into_owned();
    assert!(status.contains("tcp"), "{status}");
}

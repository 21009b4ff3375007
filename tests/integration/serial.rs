//! `labfeed run` with a `[[serial]]` port, driven through a real
//! pseudo-terminal the way an analyzer on an RS-232 line would.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::support::{TempStudy, csv_rows};

const ENQ: u8 = 0x05;
const ACK: u8 = 0x06;
const EOT: u8 = 0x04;

/// openpty's descriptors are inherited by children unless marked: the daemon
/// must not hold the analyzer's end open (an unplugged line must look unplugged).
fn close_on_exec(pty: &nix::pty::OpenptyResult) {
    for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC)).unwrap();
    }
}

/// The analyzer's end of the line: the pty master, read with a deadline.
struct Line {
    master: std::fs::File,
}

impl Line {
    /// A pseudo-terminal pair: the analyzer's end (non-blocking master), the
    /// slave end kept open by the test, and the slave's path for labfeed.
    fn open() -> (Line, std::os::fd::OwnedFd, std::path::PathBuf) {
        let pty = nix::pty::openpty(None, None).unwrap();
        close_on_exec(&pty);
        let slave_path = nix::unistd::ttyname(pty.slave.as_fd()).unwrap();
        // A real line has no echo: raw mode until labfeed sets its own settings.
        let mut termios = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
        nix::sys::termios::cfmakeraw(&mut termios);
        nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &termios).unwrap();
        let flags = nix::fcntl::fcntl(pty.master.as_fd(), nix::fcntl::FcntlArg::F_GETFL).unwrap();
        let nonblocking = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(pty.master.as_fd(), nix::fcntl::FcntlArg::F_SETFL(nonblocking)).unwrap();
        (Line { master: std::fs::File::from(pty.master) }, pty.slave, slave_path)
    }

    fn read_byte(&mut self) -> u8 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut b = [0u8; 1];
        loop {
            match self.master.read(&mut b) {
                Ok(1) => return b[0],
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("reading the line: {e}"),
            }
            assert!(Instant::now() < deadline, "no answer on the serial line");
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

#[test]
fn an_analyzer_on_a_serial_line_is_answered_and_its_upload_committed() {
    let (mut line, slave, slave_path) = Line::open();

    let study = TempStudy::new(&[("/dev/serial/by-id/usb-FTDI_FT232R-if00-port0", slave_path.to_str().unwrap())]);
    let csv = study.file("participants.csv", "participant\nU07\n");
    assert!(study.run(&["import", "participants", csv.to_str().unwrap()]).status.success());
    let log = std::fs::File::create(study.dir.path().join("daemon.log")).unwrap();
    let mut daemon: Child = study.command(&["run"]).stdout(Stdio::null()).stderr(Stdio::from(log)).spawn().unwrap();

    // Bid until the daemon has the port open and answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        line.master.write_all(&[ENQ]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let mut b = [0u8; 1];
        if let Ok(1) = line.master.read(&mut b) {
            assert_eq!(b[0], ACK);
            break;
        }
        assert!(Instant::now() < deadline, "the daemon never answered ENQ on {}", slave_path.display());
    }
    let upload = b"H|\\^&|||cobas-e411^1|||||host|RSUPL^BATCH|P|1\rP|1\rO|1|U07-V4-T60||^^^CPEP\rR|1|^^^CPEP|0.42|nmol/L||N||F||ADMIN||20260302101000\rL|1|N\r";
    for frame in labfeed::astm::encode_frames(upload, 50) {
        // Byte by byte, as a slow line delivers it.
        for b in &frame {
            line.master.write_all(&[*b]).unwrap();
        }
        assert_eq!(line.read_byte(), ACK);
    }
    line.master.write_all(&[EOT]).unwrap();
    let rows = csv_rows(&String::from_utf8_lossy(&study.run(&["export", "results"]).stdout));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows[1].iter().any(|f| f.starts_with("serial:")), "source names the port: {rows:?}");

    // Unplug the line: both ends go away. The daemon logs it and retries with a
    // back-off: it keeps running and does not spin.
    drop(line);
    drop(slave);
    let log_path = study.dir.path().join("daemon.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log_path).unwrap_or_default().contains("cannot open the serial port") {
        assert!(
            Instant::now() < deadline,
            "the hang-up was not logged: {}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let cpu_before = cpu_ticks(daemon.id());
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(daemon.id()) - cpu_before;
    assert!(spent < 50, "no busy loop while the port is gone: {spent} ticks of CPU in 2 s");
    assert!(daemon.try_wait().unwrap().is_none(), "the daemon is still running");
    let _ = std::process::Command::new("kill").arg("-TERM").arg(daemon.id().to_string()).status();
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

/// User + system CPU time of a process, in clock ticks (/proc/PID/stat fields 14 and 15).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn simulate_sends_an_upload_over_a_serial_line() {
    let (mut line, slave, slave_path) = Line::open();

    let study = TempStudy::new(&[]);
    let upload = "H|\\^&|||cobas-e411^1\rP|1\rO|1|U07-V4-T0||^^^CPEP\rR|1|^^^CPEP|0.5|nmol/L||N||F\rL|1|N\r";
    let file = study.file("upload.astm", upload);
    let simulate = study
        .command(&["simulate", "--to", slave_path.to_str().unwrap(), file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Play the LIS on the other end: ACK the bid and every frame.
    assert_eq!(line.read_byte(), ENQ);
    line.master.write_all(&[ACK]).unwrap();
    let mut frame = Vec::new();
    loop {
        let b = line.read_byte();
        if b == EOT {
            break;
        }
        frame.push(b);
        if frame.ends_with(b"\r\n") {
            assert_eq!(frame.first(), Some(&0x02), "{frame:?}");
            line.master.write_all(&[ACK]).unwrap();
            frame.clear();
        }
    }
    let out = simulate.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("delivered; 1 frames sent, 1 ACKed, 0 NAKs"), "{said}");
    drop(slave);
}

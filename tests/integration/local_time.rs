//! Local times across the daylight-saving transitions of the study zone
//! (Europe/Stockholm in the example), through the real binary on a real
//! database: meal starts in the skipped and the repeated hour, meal starts
//! with offsets, and collection times in both.

use super::support::{TempStudy, csv_rows, path, text};

fn study() -> TempStudy {
    let s = TempStudy::new(&[]);
    let participants = s.file("participants.csv", "participant,site\nU07,Uppsala\n");
    let out = s.run(&["import", "participants", path(&participants)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    s
}

fn import_visits(s: &TempStudy, meal_start: &str) -> std::process::Output {
    let visits =
        s.file("visits.csv", &format!("participant,visit,meal_start\nU07,V0,2026-03-02T08:30\nU07,V4,{meal_start}\n"));
    s.run(&["import", "visits", path(&visits)])
}

/// Standard error of an import of visits that is refused (exit 1).
#[track_caller]
fn refused_visits(s: &TempStudy, meal_start: &str) -> String {
    let out = import_visits(s, meal_start);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn db(s: &TempStudy) -> rusqlite::Connection {
    rusqlite::Connection::open(s.lib("labfeed.db")).unwrap()
}

fn visit_count(s: &TempStudy) -> i64 {
    db(s).query_row("SELECT count(*) FROM visit", [], |r| r.get(0)).unwrap()
}

/// A central-lab HL7 upload of C-peptide for U07 V4: (minute, OBR-7 collection time).
fn central_lab(draws: &[(i32, &str)]) -> String {
    let mut t = "MSH|^~\\&|CENTRALLAB|CLAB|STUDYDB|T1D|20261025120000||ORU^R01^ORU_R01|C1|P|2.5.1\r\
PID|1||U07^^^TRIAL^PI\r"
        .to_owned();
    for (i, (minute, at)) in draws.iter().enumerate() {
        t.push_str(&format!("OBR|{}|U07-V4-T{minute}^STUDY||MMTT|||{at}\r", i + 1));
        t.push_str(&format!("OBX|1|NM|1986-9^C peptide^LN||0.{}|nmol/L|||||F\r", 40 + i));
    }
    t
}

fn mismatches(s: &TempStudy) -> Vec<Vec<String>> {
    let out = s.run(&["report", "mismatches", "--format", "csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    csv_rows(&String::from_utf8_lossy(&out.stdout))
}

/// The codes raised for V4 C-peptide at `minute`, MISSING_RESULT aside.
fn codes_at(rows: &[Vec<String>], minute: &str) -> Vec<String> {
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    rows[1..]
        .iter()
        .filter(|r| r[col("visit")] == "V4" && r[col("minute")] == minute && r[col("analyte")] == "c_peptide")
        .filter(|r| r[col("code")] != "MISSING_RESULT")
        .map(|r| r[col("code")].clone())
        .collect()
}

#[test]
fn a_meal_start_the_zone_skips_is_refused_with_file_line_and_column_and_nothing_is_imported() {
    let s = study();
    // As for any refused row (SPEC §1: 1 = some input was rejected).
    let err = refused_visits(&s, "2026-03-29T02:30");
    assert!(
        err.contains(
            "visits.csv:3: column meal_start: 2026-03-29T02:30 does not exist in Europe/Stockholm: the clocks jump from +01:00 to +02:00 over it"
        ),
        "{err}"
    );
    assert!(err.contains("nothing imported; the whole file is refused"), "{err}");
    assert_eq!(visit_count(&s), 0, "line 2 is not imported either");
}

#[test]
fn a_meal_start_in_the_repeated_hour_needs_its_offset_and_the_message_names_both() {
    let s = study();
    let err = refused_visits(&s, "2026-10-25T02:30");
    assert!(
        err.contains("visits.csv:3: column meal_start: 2026-10-25T02:30 happens twice in Europe/Stockholm"),
        "{err}"
    );
    assert!(err.contains("+02:00 (the first) or +01:00 (the second)"), "{err}");
    assert_eq!(visit_count(&s), 0);

    // An offset the zone does not have then is refused, naming the ones it has.
    let err = refused_visits(&s, "2026-10-25T02:30+03:00");
    assert!(
        err.contains("visits.csv:3: column meal_start: 2026-10-25T02:30+03:00 is not a time Europe/Stockholm has"),
        "{err}"
    );
    assert!(err.contains("it is at +02:00 (the first time) or +01:00 (the second)"), "{err}");
    let out = import_visits(&s, "2026-03-02T09:00+02:00");
    assert!(String::from_utf8_lossy(&out.stderr).contains("at 2026-03-02T09:00 it is at +01:00"), "{}", text(&out));
    assert_eq!(visit_count(&s), 0);
}

#[test]
fn a_meal_start_with_a_valid_offset_is_stored_with_it_and_every_reader_keeps_the_instant() {
    let s = study();
    let out = import_visits(&s, "2026-10-25T02:30+01:00");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stored: Vec<String> = db(&s)
        .prepare("SELECT coalesce(meal_start, '') FROM visit ORDER BY visit")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(stored, ["2026-03-02T08:30:00", "2026-10-25T02:30:00+01:00"], "offset-less values stay as they were");

    // The second 02:30 is 01:30 UTC: the 30- and 60-minute draws at 03:00
    // and 03:30 are on time; the 90-minute one at 03:50 is 10 min early.
    let hl7 = s.file("central.hl7", &central_lab(&[(30, "202610250300"), (60, "202610250330"), (90, "202610250350")]));
    let out = s.run(&["ingest", path(&hl7)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let rows = mismatches(&s);
    assert_eq!(codes_at(&rows, "30"), Vec::<String>::new());
    assert_eq!(codes_at(&rows, "60"), Vec::<String>::new());
    assert_eq!(codes_at(&rows, "90"), ["OUT_OF_WINDOW"], "{rows:?}");
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let missing = rows[1..].iter().find(|r| r[col("code")] == "MISSING_RESULT" && r[col("visit")] == "V4").unwrap();
    assert!(missing[col("detail")].contains("(meal start 2026-10-25T02:30+01:00)"), "{missing:?}");

    // SDTM: LBRFTDTC carries the offset.
    let out = s.run(&["export", "lb"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let lb = String::from_utf8_lossy(&out.stdout);
    assert_eq!(lb.matches(",2026-10-25T02:30+01:00\n").count(), 3, "on each of the three records: {lb}");

    // HTML shows it to people.
    let out = s.run(&["report", "mismatches", "--format", "html"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Meal start 2026-10-25 02:30 +01:00"));

    // status counts MISSING_RESULT from it without trouble.
    let out = s.run(&["status"]);
    assert!(text(&out).contains("MISSING_RESULT"), "{}", text(&out));
}

#[test]
fn the_90_minute_draw_at_the_second_0220_of_the_autumn_night_is_on_time_and_the_choice_is_recorded() {
    let s = study();
    // 01:50 happens once (+02:00); minute 90 is the second 02:20 (+01:00).
    let out = import_visits(&s, "2026-10-25T01:50");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let hl7 =
        s.file("central.hl7", &central_lab(&[(30, "20261025022000"), (90, "20261025022000"), (120, "20261025025000")]));
    let out = s.run(&["ingest", path(&hl7)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("3 accepted"), "{}", text(&out));

    let rows = mismatches(&s);
    for minute in ["30", "90", "120"] {
        assert_eq!(codes_at(&rows, minute), Vec::<String>::new(), "minute {minute}: {rows:?}");
    }

    let chosen: Vec<(i64, String, Option<String>)> = db(&s)
        .prepare("SELECT minute, collected_at, collected_offset FROM observation ORDER BY minute")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        chosen,
        [
            (30, "2026-10-25T02:20:00".to_owned(), Some("+02:00".to_owned())),
            (90, "2026-10-25T02:20:00".to_owned(), Some("+01:00".to_owned())),
            (120, "2026-10-25T02:50:00".to_owned(), Some("+01:00".to_owned())),
        ]
    );

    // The export names the instant read: as sent, with the chosen offset.
    let out = s.run(&["export", "results"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let results = csv_rows(&String::from_utf8_lossy(&out.stdout));
    let col = |name: &str| results[0].iter().position(|c| c == name).unwrap();
    let collected: Vec<(&str, &str)> =
        results[1..].iter().map(|r| (r[col("minute")].as_str(), r[col("collected_at")].as_str())).collect();
    assert_eq!(
        collected,
        [
            ("30", "2026-10-25T02:20:00+02:00"),
            ("90", "2026-10-25T02:20:00+01:00"),
            ("120", "2026-10-25T02:50:00+01:00")
        ]
    );
    // The schema is current (v5 and later read a repeated time again after a correction).
    let version: i64 = db(&s).query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(version, labfeed::store::latest_version());
}

#[test]
fn a_collection_time_in_the_skipped_hour_is_accepted_and_flagged_never_shifted() {
    let s = study();
    // 01:50 (+01:00); 02:20 on this night never happened.
    let out = import_visits(&s, "2026-03-29T01:50");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let hl7 = s.file("central.hl7", &central_lab(&[(30, "20260329022000"), (90, "20260329042000")]));
    let out = s.run(&["ingest", path(&hl7)]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("2 accepted"), "{}", text(&out));

    let rows = mismatches(&s);
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    assert_eq!(codes_at(&rows, "30"), ["OUT_OF_WINDOW"]);
    assert_eq!(codes_at(&rows, "90"), Vec::<String>::new(), "04:20 CEST is 90 min after 01:50 CET");
    let flagged = rows[1..].iter().find(|r| r[col("code")] == "OUT_OF_WINDOW").unwrap();
    assert_eq!(
        flagged[col("detail")],
        "collected 02:20 on 2026-03-29, a local time that does not exist in Europe/Stockholm (the clocks jump from +01:00 to +02:00 over it); the draw time cannot be checked against nominal 30 ± 3 min"
    );
    let offsets: Vec<Option<String>> = db(&s)
        .prepare("SELECT collected_offset FROM observation ORDER BY minute")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(offsets, [None, None]);
}

#[test]
fn a_version_2_database_gains_collected_offset_empty_for_its_observations_and_checked_for_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    for m in &labfeed::store::MIGRATIONS[..2] {
        conn.execute_batch(m.sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute_batch(
        "INSERT INTO raw (id, sha256, size, format, content, first_received_at)
           VALUES (1, printf('%064d', 0), 1, 'astm', x'00', '2026-03-02T10:00:00Z');
         INSERT INTO message (id, raw_id, number, span_start, span_end) VALUES (1, 1, 1, 0, 1);
         INSERT INTO observation (id, message_id, seq, byte_offset, qc, outcome, collected_at)
           VALUES (1, 1, 1, 0, 0, 'accepted', '2026-10-25T02:20:00');",
    )
    .unwrap();
    drop(conn);

    let store = labfeed::store::Store::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), labfeed::store::latest_version());
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old: Option<String> =
        conn.query_row("SELECT collected_offset FROM observation WHERE id = 1", [], |r| r.get(0)).unwrap();
    assert_eq!(old, None, "an old observation made no choice");
    let bad = conn.execute(
        "INSERT INTO observation (message_id, seq, byte_offset, qc, outcome_code, collected_offset)
           VALUES (1, 2, 0, 0, 0, 'CEST')",
        [],
    );
    assert!(bad.is_err(), "only +HH:MM / -HH:MM is stored");
}

/// A leap second (`:60`) is no valid local time: refused like any bad time,
/// naming file, line and column, and nothing of the file is imported.
#[test]
fn a_meal_start_with_60_seconds_is_refused_with_file_line_and_column() {
    let s = study();
    for bad in ["2026-03-01T08:00:60", "2026-03-01T08:00:60+01:00"] {
        let err = refused_visits(&s, bad);
        assert!(
            err.contains(&format!("visits.csv:3: column meal_start: \"{bad}\" is not a local date and time")),
            "{err}"
        );
        assert!(err.contains("nothing imported; the whole file is refused"), "{err}");
        assert_eq!(visit_count(&s), 0, "line 2 is not imported either");
    }
}

//! The console in a real browser: Debian's Chromium, headless, driven
//! through chromedriver (WebDriver) by fantoccini. Elements are found as a
//! person finds them: fields by their label, buttons and links by their text,
//! headings by theirs.
//!
//! Without chromium and chromedriver the tests print one line and pass,
//! unless `LABFEED_REQUIRE_BROWSER=1` (CI) makes that a failure.
//! [`Browser`] is for every page's browser tests.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};

use super::support::{DATA_MANAGER, central, path};
use super::web::Console;

/// A program on `PATH`.
fn program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| PathBuf::from(dir).join(name)).find(|p| p.is_file())
}

/// chromedriver and a headless Chromium session, closed and stopped when dropped.
pub(crate) struct Browser {
    driver: Child,
    client: Option<Client>,
    runtime: tokio::runtime::Runtime,
    /// Chromium's profile, its own for each browser (tests run in parallel).
    _profile: tempfile::TempDir,
}

/// A browser, or None (after one printed line) when Chromium or chromedriver
/// is not installed and `LABFEED_REQUIRE_BROWSER` is not 1.
pub(crate) fn browser() -> Option<Browser> {
    let (chromium, driver) = match (program("chromium"), program("chromedriver")) {
        (Some(chromium), Some(driver)) => (chromium, driver),
        _ => {
            assert!(
                std::env::var("LABFEED_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "LABFEED_REQUIRE_BROWSER=1 but chromium or chromedriver is missing \
                 (apt-get install chromium chromium-driver)"
            );
            // One line for the whole run, however many browser tests skip.
            static SAID: std::sync::Once = std::sync::Once::new();
            SAID.call_once(|| println!("skipped: no chromium/chromedriver (apt-get install chromium chromium-driver)"));
            return None;
        }
    };
    Some(Browser::start(&chromium, &driver))
}

impl Browser {
    fn start(chromium: &std::path::Path, driver: &std::path::Path) -> Browser {
        // A free loopback port for chromedriver (it cannot say which one it took).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready, started) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            // Read to the end so chromedriver never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("started successfully")
                    && let Some(ready) = ready.take()
                {
                    let _ = ready.send(());
                }
            }
        });
        if started.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromedriver did not start on port {port}");
        }
        let profile = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".to_owned(),
            serde_json::json!({
                "binary": chromium,
                "args": [
                    // Tests run as root, where Chromium's sandbox cannot start.
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = runtime.block_on(async {
            ClientBuilder::new(connector).capabilities(caps).connect(&format!("http://127.0.0.1:{port}")).await
        });
        let client = match client {
            Ok(client) => client,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("no Chromium session through chromedriver: {e}");
            }
        };
        Browser { driver: child, client: Some(client), runtime, _profile: profile }
    }

    /// Run the browser steps `f` to their end.
    pub(crate) fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    pub(crate) fn client(&self) -> &Client {
        self.client.as_ref().expect("a browser session")
    }

    /// Open `path` of the console.
    pub(crate) async fn open(&self, console: &Console, path: &str) {
        let url = format!("{}{path}", console.url());
        self.client().goto(&url).await.unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    /// One element found by `xpath`, waited for (pages load after a click);
    /// `what` says what a person would look for.
    pub(crate) async fn find(&self, xpath: &str, what: &str) -> Element {
        let mut wait = self.client().wait();
        wait = wait.at_most(Duration::from_secs(30));
        match wait.for_element(Locator::XPath(xpath)).await {
            Ok(element) => element,
            Err(e) => {
                let page = self.client().source().await.unwrap_or_default();
                panic!("no {what} ({xpath}): {e}\n{page}");
            }
        }
    }

    /// The form field labelled `label` (its `<label for>`).
    pub(crate) async fn field(&self, label: &str) -> Element {
        let xpath = format!("//*[@id=//label[normalize-space()={}]/@for]", quoted(label));
        self.find(&xpath, &format!("field labelled {label:?}")).await
    }

    /// The button reading `text`.
    pub(crate) async fn button(&self, text: &str) -> Element {
        let t = quoted(text);
        let xpath = format!(
            "//button[normalize-space()={t}] | //input[(@type='submit' or @type='button') and @value={t}] \
             | //*[@role='button' and normalize-space()={t}]"
        );
        self.find(&xpath, &format!("button {text:?}")).await
    }

    /// The link reading `text`.
    pub(crate) async fn link(&self, text: &str) -> Element {
        self.find(&format!("//a[normalize-space()={}]", quoted(text)), &format!("link {text:?}")).await
    }

    /// A heading (h1-h3) reading `text`.
    pub(crate) async fn heading(&self, text: &str) -> Element {
        let t = quoted(text);
        self.find(
            &format!("//h1[normalize-space()={t}] | //h2[normalize-space()={t}] | //h3[normalize-space()={t}]"),
            &format!("heading {text:?}"),
        )
        .await
    }

    /// An element with `role` whose text contains `text` (e.g. an alert).
    pub(crate) async fn role(&self, role: &str, text: &str) -> Element {
        let xpath = format!("//*[@role={}][contains(normalize-space(), {})]", quoted(role), quoted(text));
        self.find(&xpath, &format!("{role} saying {text:?}")).await
    }

    /// The text a person sees on the page.
    pub(crate) async fn text(&self) -> String {
        let body = self.find("//body", "page body").await;
        body.text().await.unwrap_or_default()
    }

    /// Fill the field labelled `label` with `value`.
    pub(crate) async fn fill(&self, label: &str, value: &str) {
        let field = self.field(label).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }

    /// Sign in on the login page as a person would; then Today is shown.
    pub(crate) async fn sign_in(&self, console: &Console, name: &str, password: &str) {
        self.open(console, "/login").await;
        self.fill("Account", name).await;
        self.fill("Password", password).await;
        self.button("Sign in").await.click().await.unwrap();
        self.heading("Today").await;
    }
}

/// An XPath string literal for `text` (XPath 1.0 has no escapes).
fn quoted(text: &str) -> String {
    if !text.contains('\'') {
        format!("'{text}'")
    } else if !text.contains('"') {
        format!("\"{text}\"")
    } else {
        let parts: Vec<String> = text.split('\'').map(|p| format!("'{p}'")).collect();
        format!("concat({})", parts.join(", \"'\", "))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(client.close());
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[test]
fn a_person_signs_in_by_the_labels_sees_todays_files_and_signs_out() {
    let Some(browser) = browser() else { return };
    let t = super::web::study();
    let inbox = t.lib("inbox");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::write(inbox.join("central-morning.hl7"), central("C1", "U07", "U07-V4-T30", "202603020900", "0.8"))
        .unwrap();
    let out = t.run(&["run", "--once"]);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", super::support::text(&out));
    let console = Console::start(&t);
    browser.run(async {
        // A wrong password: told so, still on the sign-in page.
        browser.open(&console, "/").await;
        browser.heading("labfeed NCT02057211: sign in").await;
        browser.fill("Account", DATA_MANAGER.0).await;
        browser.fill("Password", "not-my-password").await;
        browser.button("Sign in").await.click().await.unwrap();
        browser.role("alert", "unknown account or wrong password").await;

        browser.sign_in(&console, DATA_MANAGER.0, DATA_MANAGER.1).await;
        let text = browser.text().await;
        assert!(text.contains("central-morning.hl7"), "today's file: {text}");
        assert!(text.contains(path(&t.lib("inbox"))), "the watch folder: {text}");
        assert!(text.contains("Times are shown in Europe/Stockholm."), "{text}");
        browser.link("Today").await;

        browser.button("Sign out").await.click().await.unwrap();
        browser.heading("labfeed NCT02057211: sign in").await;
        // Signed out: Today sends back to the sign-in page.
        browser.open(&console, "/").await;
        browser.field("Account").await;
        assert!(!browser.text().await.contains("central-morning.hl7"));
    });
}

impl Browser {
    /// The field labelled `label` inside the fieldset or form whose legend
    /// or heading reads `group` (a page with several signed forms).
    pub(crate) async fn field_in(&self, group: &str, label: &str) -> Element {
        let (g, l) = (quoted(group), quoted(label));
        let xpath = format!(
            "(//fieldset[legend[contains(normalize-space(), {g})]] | //form[.//h3[contains(normalize-space(), {g})]])\
             //*[@id=//label[normalize-space()={l}]/@for]"
        );
        self.find(&xpath, &format!("field labelled {label:?} under {group:?}")).await
    }

    /// The button reading `text` in the same group as [`Browser::field_in`].
    pub(crate) async fn button_in(&self, group: &str, text: &str) -> Element {
        let (g, t) = (quoted(group), quoted(text));
        let xpath = format!(
            "(//fieldset[legend[contains(normalize-space(), {g})]] | //form[.//h3[contains(normalize-space(), {g})]])\
             //button[normalize-space()={t}]"
        );
        self.find(&xpath, &format!("button {text:?} under {group:?}")).await
    }

    /// Type `value` into the field labelled `label` under `group`.
    pub(crate) async fn fill_in(&self, group: &str, label: &str, value: &str) {
        let field = self.field_in(group, label).await;
        field.clear().await.unwrap();
        field.send_keys(value).await.unwrap();
    }
}

/// A study with a rerun that disagrees with the first measurement: one
/// DUPLICATE_CONFLICT, delivered today.
fn a_conflict() -> super::support::TempStudy {
    use super::support::{import_csv, ingest_bytes};
    let t = super::web::study();
    import_csv(&t, "participants", "participants.csv", "participant\nU01\nU02\n");
    import_csv(
        &t,
        "visits",
        "visits.csv",
        "participant,visit,meal_start\nU01,V0,2026-03-02T08:00\nU02,V0,2026-03-02T08:00\n",
    );
    import_csv(&t, "samples", "samples.csv", "sample_id,participant,visit,minute\nS-1,U01,V0,30\nS-2,U02,V0,30\n");
    for (name, sample, value) in [("first.hl7", "S-2", "0.40"), ("rerun.hl7", "S-2", "0.55")] {
        ingest_bytes(&t, name, central(name, "U02", sample, "20260302083000", value).as_bytes());
    }
    t
}

/// `report mismatches [--all] --format csv` from the real binary: rows by column name.
fn report(t: &super::support::TempStudy, all: bool) -> Vec<std::collections::HashMap<String, String>> {
    let mut args = vec!["report", "mismatches", "--format", "csv"];
    if all {
        args.push("--all");
    }
    let rows = super::support::csv_rows(&super::support::ok(&t.run(&args)));
    let (head, rows) = rows.split_first().unwrap();
    rows.iter().map(|r| head.iter().cloned().zip(r.iter().cloned()).collect()).collect()
}

#[test]
fn a_data_manager_decides_a_mismatch_with_the_password_and_the_report_shows_it() {
    let Some(browser) = browser() else { return };
    let t = a_conflict();
    let open = report(&t, false);
    let conflict = open.iter().find(|r| r["code"] == "DUPLICATE_CONFLICT").unwrap()["id"].clone();
    let console = Console::start(&t);
    let group = "I accept value 0.55 nmol/L of sample S-2 for U02/V0/30 min.";
    browser.run(async {
        browser.sign_in(&console, DATA_MANAGER.0, DATA_MANAGER.1).await;
        let today = browser.text().await;
        assert!(today.contains("first.hl7") && today.contains("rerun.hl7"), "today's files: {today}");

        // To the queue, narrowed to the code by its count, then the mismatch.
        browser.link("Mismatches").await.click().await.unwrap();
        browser.heading("Open by code").await;
        browser.link("DUPLICATE_CONFLICT").await.click().await.unwrap();
        browser.find("//select[@id='f-code']/option[@selected and .='DUPLICATE_CONFLICT']", "the code filter").await;
        browser.link(&format!("#{conflict}")).await.click().await.unwrap();
        browser.heading(&format!("Mismatch #{conflict} (DUPLICATE_CONFLICT)")).await;
        browser.heading("MMTT curves").await;
        browser.heading("The message as stored (masked)").await;

        // A wrong password signs nothing; what was typed stays but the password.
        browser.fill_in(group, "Reason", "rerun confirmed by the lab").await;
        browser.fill_in(group, &format!("Your password ({})", DATA_MANAGER.0), "not-my-password").await;
        browser.button_in(group, "Accept and sign").await.click().await.unwrap();
        browser.role("alert", "Not signed").await;
        let reason = browser.field_in(group, "Reason").await.prop("value").await.unwrap();
        assert_eq!(reason.as_deref(), Some("rerun confirmed by the lab"));
        assert_eq!(report(&t, false), open, "nothing decided");

        // The password again: signed, back at the queue, which no longer lists it.
        browser.fill_in(group, &format!("Your password ({})", DATA_MANAGER.0), DATA_MANAGER.1).await;
        browser.button_in(group, "Accept and sign").await.click().await.unwrap();
        browser.role("status", &format!("Mismatch #{conflict} resolved (accept) by dm.anna")).await;
        let queue = browser.text().await;
        assert!(!queue.contains(&format!("#{conflict} DUPLICATE_CONFLICT")), "{queue}");
        let links = browser.client().find_all(Locator::XPath(&format!("//a[normalize-space()='#{conflict}']"))).await;
        assert!(links.unwrap().is_empty(), "the decided mismatch left the queue");
    });
    assert_eq!(report(&t, false).len(), open.len() - 1);
    let all = report(&t, true);
    let row = all.iter().find(|r| r["id"] == conflict).unwrap();
    assert_eq!(
        (row["decision"].as_str(), row["decided_by"].as_str(), row["reason"].as_str()),
        ("accept", DATA_MANAGER.0, "rerun confirmed by the lab")
    );
}

#[test]
fn a_data_manager_locks_a_participant_signed_from_its_page() {
    let Some(browser) = browser() else { return };
    let t = a_conflict();
    let console = Console::start(&t);
    browser.run(async {
        browser.sign_in(&console, DATA_MANAGER.0, DATA_MANAGER.1).await;
        browser.link("Participants").await.click().await.unwrap();
        browser.link("U02").await.click().await.unwrap();
        browser.heading("Data lock").await;
        let group = "Lock participant U02";
        browser.fill_in(group, "Reason (kept with the signature)", "all visits reviewed").await;
        browser.fill_in(group, "Your password (the signature)", DATA_MANAGER.1).await;
        browser.button_in(group, "Sign and lock").await.click().await.unwrap();
        // Locked: the page now offers the unlock, signed the same way.
        browser.heading("Unlock participant U02").await;
    });
    let status = super::support::ok(&t.run(&["status"]));
    assert!(status.contains("participant U02 since") && status.contains("all visits reviewed"), "{status}");
}

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

//! Debian's Chromium driven over the DevTools protocol (chromiumoxide),
//! launched by the test itself so that its flags are exactly ours:
//!
//! * [`Mode::Person`]: a headed browser in a virtual X display (Xvfb),
//!   without automation flags (`navigator.webdriver` is false), standing in
//!   for a person's browser;
//! * [`Mode::Automated`]: headless, with `--enable-automation` as
//!   Puppeteer, Playwright and ChromeDriver start it, and a normal Chrome
//!   user agent;
//! * [`Mode::NoJs`]: the person's browser with JavaScript switched off.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chromiumoxide::{Browser, Page};
use futures_util::StreamExt;

/// How the browser is started.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Headed under Xvfb, no automation flags.
    Person,
    /// Headless, `--enable-automation`, this user agent.
    Automated(String),
    /// Headed under Xvfb, JavaScript off.
    NoJs,
}

/// A running Chromium (and its X server); killed on drop.
pub struct Chromium {
    child: Child,
    xvfb: Option<Child>,
    _profile: tempfile::TempDir,
    /// The DevTools connection.
    pub browser: Browser,
    handler: tokio::task::JoinHandle<()>,
}

fn start_xvfb() -> (Child, u32) {
    for _ in 0..20 {
        let display = 100 + (super::free_port() as u32 % 800);
        let sock = format!("/tmp/.X11-unix/X{display}");
        if std::path::Path::new(&sock).exists() {
            continue;
        }
        let mut child = Command::new("Xvfb")
            .arg(format!(":{display}"))
            .args(["-screen", "0", "1280x900x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb is needed for this test: `./dev test` installs it (package xvfb)");
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if std::path::Path::new(&sock).exists() {
                return (child, display);
            }
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("could not start Xvfb");
}

impl Chromium {
    /// Starts Chromium and connects to it.
    pub async fn launch(mode: Mode) -> Chromium {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut cmd = Command::new("chromium");
        // As the project's probe starts it on this machine kind: no sandbox
        // as root, no background connections (the network is closed).
        cmd.args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-features=Translate,MediaRouter,OptimizationHints",
            "--password-store=basic",
            "--remote-debugging-port=0",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()));
        let mut xvfb = None;
        match &mode {
            Mode::Person | Mode::NoJs => {
                let (x, display) = start_xvfb();
                xvfb = Some(x);
                cmd.env("DISPLAY", format!(":{display}"));
                cmd.arg("--ozone-platform=x11");
                // What a person's browser reports: no automation.
                cmd.arg("--disable-blink-features=AutomationControlled");
                if matches!(mode, Mode::NoJs) {
                    cmd.arg("--blink-settings=scriptEnabled=false");
                }
            }
            Mode::Automated(ua) => {
                cmd.args(["--headless", "--enable-automation"]);
                cmd.arg(format!("--user-agent={ua}"));
            }
        }
        cmd.arg("about:blank");
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect(
            "chromium is needed for this test: `./dev test` installs it (package chromium)",
        );
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent && let Some(i) = line.find("ws://") {
                    let _ = tx.send(line[i..].trim().to_string());
                    sent = true;
                }
            }
        });
        let ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium did not print its DevTools address");
        let (browser, mut handler) = Browser::connect(ws).await.expect("connect to chromium");
        let handler = tokio::spawn(async move {
            while let Some(ev) = handler.next().await {
                if ev.is_err() {
                    // Unknown events of a newer Chromium are not fatal.
                    continue;
                }
            }
        });
        Chromium {
            child,
            xvfb,
            _profile: profile,
            browser,
            handler,
        }
    }

    /// A new tab on `url`, once loaded.
    pub async fn open(&self, url: &str) -> Page {
        let page = self.browser.new_page(url).await.expect("new page");
        let _ = page.wait_for_navigation().await;
        page
    }
}

/// Navigates `page` and waits for the load.
pub async fn goto(page: &Page, url: &str) {
    page.goto(url).await.expect("navigate");
    let _ = page.wait_for_navigation().await;
}

/// The page's HTML, waiting up to `timeout` for it to contain `needle`.
pub async fn wait_for_content(page: &Page, needle: &str, timeout: Duration) -> String {
    let until = Instant::now() + timeout;
    loop {
        let html = page.content().await.unwrap_or_default();
        if html.contains(needle) || Instant::now() > until {
            return html;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.handler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(x) = &mut self.xvfb {
            let _ = x.kill();
            let _ = x.wait();
        }
    }
}

//! The web console in a real browser: headless Chromium driven through WebDriver
//! (chromedriver, fantoccini) against the real `portcullis serve`, one scenario per
//! test, as issue #18 lists them. A missing `chromium` or `chromedriver` fails the
//! test with the command that installs them.
//!
//! The browser tests run one at a time (a lock): each starts its own server, its own
//! chromedriver and one browser session, so a failure leaves no state behind for the
//! next. `PORTCULLIS_SCREENSHOTS=DIR` makes them save the main pages as PNGs there
//! (how `docs/console/*.png` were made).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use crate::support::{Api, Server};

const INSTALL: &str = "apt-get install -y chromium chromium-driver";
/// Every test user's password.
const PASSWORD: &str = "console-Passw0rd-long";

/// One browser test at a time: Chromium is heavy, and the machine is shared.
static BROWSER: Mutex<()> = Mutex::new(());

fn tool(names: &[&str]) -> PathBuf {
    for name in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let path = Path::new(dir).join(name);
            if path.exists() {
                return path;
            }
        }
    }
    panic!(
        "the console's browser tests need {} (headless Chromium and its WebDriver): {INSTALL}",
        names.join(" or ")
    );
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    fn start() -> Driver {
        let binary = tool(&["chromedriver"]);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start chromedriver ({error}): {INSTALL}"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, port }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser on a fresh server, with the users of [`estate`].
struct Console {
    runtime: tokio::runtime::Runtime,
    browser: Client,
    server: Server,
    base: String,
    _driver: Driver,
    _dir: tempfile::TempDir,
    _lock: std::sync::MutexGuard<'static, ()>,
}

impl Console {
    fn start() -> Console {
        let lock = BROWSER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let chromium = tool(&["chromium", "chromium-browser"]);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = Server::start(dir.path(), &[]);
        estate(&server.admin());
        let driver = Driver::start();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"],
            }),
        );
        let browser = runtime
            .block_on(
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&format!("http://127.0.0.1:{}", driver.port)),
            )
            .unwrap_or_else(|error| panic!("cannot open a Chromium session ({error}): {INSTALL}"));
        let base = server.admin().base.clone();
        Console {
            runtime,
            browser,
            server,
            base,
            _driver: driver,
            _dir: dir,
            _lock: lock,
        }
    }

    fn admin(&self) -> Api {
        self.server.admin()
    }

    fn go(&self, path: &str) {
        let url = format!("{}{path}", self.base);
        self.runtime
            .block_on(self.browser.goto(&url))
            .unwrap_or_else(|error| panic!("{path}: {error}"));
    }

    fn path(&self) -> String {
        let url = self
            .runtime
            .block_on(self.browser.current_url())
            .expect("the URL");
        url.path().to_owned()
    }

    /// Asserts that the browser is at `path`, showing the page when not.
    fn at(&self, path: &str) {
        let here = self.path();
        assert_eq!(here, path, "{}", self.source());
    }

    fn source(&self) -> String {
        self.runtime
            .block_on(self.browser.source())
            .expect("the page")
    }

    fn text(&self, css: &str) -> String {
        self.runtime
            .block_on(async {
                let element = self.browser.find(Locator::Css(css)).await?;
                element.text().await
            })
            .unwrap_or_else(|error| {
                let page = self.source();
                let main = page.find("<main").map_or(page.as_str(), |at| &page[at..]);
                panic!(
                    "`{css}` on {}: {error}\n{}",
                    self.path(),
                    &main[..main.len().min(3000)]
                )
            })
    }

    fn exists(&self, css: &str) -> bool {
        self.runtime
            .block_on(self.browser.find_all(Locator::Css(css)))
            .map(|found| !found.is_empty())
            .unwrap_or(false)
    }

    /// Types `value` into the field `css` (cleared first).
    fn fill(&self, css: &str, value: &str) {
        self.runtime
            .block_on(async {
                let element = self.browser.find(Locator::Css(css)).await?;
                element.clear().await?;
                element.send_keys(value).await
            })
            .unwrap_or_else(|error| panic!("fill `{css}`: {error}"));
    }

    fn click(&self, css: &str) {
        self.runtime
            .block_on(async { self.browser.find(Locator::Css(css)).await?.click().await })
            .unwrap_or_else(|error| panic!("click `{css}` on {}: {error}", self.path()));
    }

    /// Sets a field's value as a script would (a `datetime-local` input takes no
    /// typed ISO text).
    fn set_value(&self, css: &str, value: &str) {
        self.runtime
            .block_on(self.browser.execute(
                "document.querySelector(arguments[0]).value = arguments[1];",
                vec![json!(css), json!(value)],
            ))
            .unwrap_or_else(|error| panic!("set `{css}`: {error}"));
    }

    /// Clicks what `locator` finds and waits for the next page to load (the old
    /// page's root element goes stale).
    fn navigate(&self, locator: Locator<'_>, what: &str) {
        self.runtime
            .block_on(async {
                let root = self.browser.find(Locator::Css("html")).await?;
                self.browser.find(locator).await?.click().await?;
                let deadline = Instant::now() + Duration::from_secs(15);
                while root.tag_name().await.is_ok() {
                    assert!(Instant::now() < deadline, "{what}: no new page within 15 s");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                self.browser
                    .wait()
                    .for_element(Locator::Css("body"))
                    .await?;
                Ok::<(), fantoccini::error::CmdError>(())
            })
            .unwrap_or_else(|error| panic!("{what} on {}: {error}", self.path()));
    }

    /// Clicks the button whose text is `label` (a form's submit) and waits for the
    /// answer.
    fn press(&self, label: &str) {
        let xpath = format!("//button[normalize-space(.)='{label}']");
        self.navigate(Locator::XPath(&xpath), &format!("press `{label}`"));
    }

    /// Follows the link whose text is `label`.
    fn follow(&self, label: &str) {
        self.navigate(Locator::LinkText(label), &format!("follow `{label}`"));
    }

    fn select(&self, css: &str, value: &str) {
        self.runtime
            .block_on(async {
                self.browser
                    .find(Locator::Css(css))
                    .await?
                    .select_by_value(value)
                    .await
            })
            .unwrap_or_else(|error| panic!("select `{value}` in `{css}`: {error}"));
    }

    fn sign_in(&self, login: &str, code: Option<&str>) {
        self.go("/ui/login");
        self.fill("#f-login", login);
        self.fill("#f-password", PASSWORD);
        if let Some(code) = code {
            self.fill("#f-code", code);
        }
        self.press("Sign in");
    }

    /// Saves the page as `docs/console/NAME.png` when `PORTCULLIS_SCREENSHOTS` names a
    /// directory.
    fn screenshot(&self, name: &str) {
        let Some(dir) = std::env::var_os("PORTCULLIS_SCREENSHOTS") else {
            return;
        };
        let png = self
            .runtime
            .block_on(self.browser.screenshot())
            .expect("a screenshot");
        std::fs::write(Path::new(&dir).join(format!("{name}.png")), png)
            .expect("write the screenshot");
    }

    /// A request the browser cannot make: a form POST with this session's cookie as
    /// the page shows it, with `fields` as they are (no token unless given).
    fn forge(&self, path: &str, fields: &[(&str, &str)]) -> u16 {
        let cookies = self
            .runtime
            .block_on(self.browser.get_all_cookies())
            .expect("cookies");
        let cookie: Vec<String> = cookies
            .iter()
            .map(|c| format!("{}={}", c.name(), c.value()))
            .collect();
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let client = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a client");
        client
            .post(format!("{}{path}", self.base))
            .header("cookie", cookie.join("; "))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .expect("the forged request")
            .status()
            .as_u16()
    }

    /// This page's CSRF token.
    fn csrf(&self) -> String {
        self.runtime
            .block_on(async {
                self.browser
                    .find(Locator::Css("input[name=_csrf]"))
                    .await?
                    .attr("value")
                    .await
            })
            .expect("a CSRF field")
            .expect("a value")
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let browser = self.browser.clone();
        let _ = self.runtime.block_on(browser.close());
    }
}

/// The users, groups, nodes and assets of the scenarios.
fn estate(admin: &Api) {
    for (username, roles) in [
        ("root-admin", json!(["system-admin"])),
        ("audrey", json!(["system-auditor"])),
        ("paula", json!(["user"])),
        ("tina", json!(["system-admin"])),
    ] {
        admin.create(
            "/api/v1/users",
            json!({"username": username, "password": PASSWORD, "system_roles": roles, "email": format!("{username}@example.com")}),
        );
    }
    admin.create(
        "/api/v1/nodes",
        json!({"name": "Lab", "parent": "/Default"}),
    );
    admin.create(
        "/api/v1/assets",
        json!({"name": "lab-01", "address": "10.9.0.1", "platform": "linux", "protocols": ["ssh/22"],
               "nodes": ["/Default/Lab"], "accounts": [{"username": "admin"}, {"username": "root", "privileged": true}]}),
    );
    admin.create(
        "/api/v1/groups",
        json!({"name": "lab-users", "members": ["paula"]}),
    );
    admin.create(
        "/api/v1/rules",
        json!({"name": "paula-lab", "users": ["paula"], "nodes": ["/Default/Lab"], "accounts": ["@ALL"], "protocols": ["ssh"], "actions": ["connect"]}),
    );
}

/// Enrols TOTP for `login` through the API; the secret (base32).
fn enrol_totp(admin: &Api, login: &str) -> String {
    let proof = json!({"login": login, "password": PASSWORD});
    let enrolment = admin.post("/api/v1/auth/mfa/totp/enroll", &proof);
    assert_eq!(enrolment.status, 200, "{}", enrolment.text());
    let secret = enrolment.json["secret"]
        .as_str()
        .expect("a secret")
        .to_owned();
    let mut confirm = proof.clone();
    confirm["totp_code"] = json!(totp(&secret, 0));
    let confirmed = admin.post("/api/v1/auth/mfa/totp/confirm", &confirm);
    assert_eq!(confirmed.status, 200, "{}", confirmed.text());
    secret
}

/// The TOTP code `steps` periods from now.
fn totp(secret: &str, steps: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_owned())
        .to_bytes()
        .expect("base32");
    let totp = totp_rs::TOTP::new_unchecked(totp_rs::Algorithm::SHA1, 6, 1, 30, bytes);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    totp.generate(now.saturating_add_signed(steps * 30))
}

#[test]
fn sign_in_with_a_password_and_a_totp_code_and_a_wrong_code_is_refused() {
    let console = Console::start();
    let secret = enrol_totp(&console.admin(), "tina");
    // A wrong code: refused, no session.
    let wrong = if totp(&secret, 0) == "000000" {
        "111111"
    } else {
        "000000"
    };
    console.sign_in("tina", Some(wrong));
    assert_eq!(console.path(), "/ui/login");
    assert!(console.text("#problem").contains("code is wrong"));
    console.go("/ui/users");
    assert_eq!(console.path(), "/ui/login", "no session after a wrong code");
    // Without a code: asked for one.
    console.sign_in("tina", None);
    assert!(console.text("#problem").contains("code"));
    console.screenshot("sign-in");
    // The right code: signed in, at the users list.
    // The next period's code (the current one confirmed the enrolment, and a code
    // works once); the server accepts one period of skew.
    console.sign_in("tina", Some(&totp(&secret, 1)));
    console.at("/ui/users");
    assert!(console.text(".who").contains("tina"));
    // Sign-out ends the session.
    console.press("Sign out");
    console.go("/ui/users");
    assert_eq!(console.path(), "/ui/login");
}

#[test]
fn create_a_user_duplicate_it_and_change_the_copys_username_and_email() {
    let console = Console::start();
    console.sign_in("root-admin", None);
    console.go("/ui/users/new");
    console.fill("#f-username", "nora");
    console.fill("#f-name", "Nora North");
    console.fill("#f-email", "nora@example.com");
    console.fill("#f-system_roles", "user");
    console.fill("#f-description", "from the console");
    console.press("Create");
    console.at("/ui/users/nora");
    console.screenshot("user-details");
    console.follow("Duplicate");
    assert_eq!(console.path(), "/ui/users/nora/duplicate");
    // The copy's form keeps the settings, not the unique fields.
    assert_eq!(
        console
            .runtime
            .block_on(async {
                console
                    .browser
                    .find(Locator::Css("#f-description"))
                    .await?
                    .prop("value")
                    .await
            })
            .expect("value")
            .as_deref(),
        Some("from the console")
    );
    console.fill("#f-username", "nora2");
    console.fill("#f-email", "nora2@example.com");
    console.press("Create");
    console.at("/ui/users/nora2");
    // Change the copy's username and email.
    console.follow("Edit");
    console.fill("#f-username", "nora-copy");
    console.fill("#f-email", "nora.copy@example.com");
    console.press("Save");
    console.at("/ui/users/nora-copy");
    let user = console.admin().get("/api/v1/users/nora-copy").json;
    assert_eq!(user["email"], "nora.copy@example.com");
    assert_eq!(user["name"], "Nora North");
    assert_eq!(user["description"], "from the console");
    assert_eq!(
        console.admin().get("/api/v1/users/nora").json["email"],
        "nora@example.com"
    );
    // A clash is refused next to the form, in the engine's words.
    console.go("/ui/users/new");
    console.fill("#f-username", "nora");
    console.press("Create");
    assert!(console.text("#problem").contains("nora"));
    // The list pages and searches on the server.
    console.go("/ui/users?search=nora");
    assert!(console.text("#results").contains("nora-copy"));
    assert!(!console.text("#results").contains("audrey"));
    console.go("/ui/users");
    console.screenshot("users");
}

#[test]
fn create_a_group_with_a_permanent_and_a_temporary_member_and_a_role_on_a_scope() {
    let console = Console::start();
    console.sign_in("root-admin", None);
    console.go("/ui/groups/new");
    console.fill("#f-name", "night-shift");
    console.fill("#f-member-0", "paula");
    console.fill("#f-member-1", "audrey");
    console.set_value("#f-member-expiry-1", "2031-06-01T12:00");
    console.press("Create");
    console.at("/ui/groups/night-shift");
    assert_eq!(console.text("#member-count"), "2");
    let members = console.text("#members");
    assert!(members.contains("permanent"), "{members}");
    assert!(members.contains("2031-06-01T12:00:00Z"), "{members}");
    // A role on a scope: the permissions table gains a row.
    console.fill("#f-scope", "/Default/Lab");
    console.click("input[name=role][value=system-auditor]");
    console.press("Set roles on scope");
    assert!(console.text("#roles").contains("/Default/Lab"));
    let group = console.admin().get("/api/v1/groups/night-shift").json;
    assert_eq!(
        group["roles"],
        json!([{"scope": "/Default/Lab", "roles": ["system-auditor"]}])
    );
    console.screenshot("group-details");
    console.go("/ui/groups");
    console.screenshot("groups");
}

#[test]
fn a_rule_with_all_but_root_over_a_node_and_the_access_tester_says_why() {
    let console = Console::start();
    console.sign_in("root-admin", None);
    console.go("/ui/rules/new");
    console.fill("#f-name", "lab-not-root");
    console.fill("#f-users_typed", "audrey");
    console.select("#f-nodes", "/Default/Lab");
    console.click("#f-account\\@ALL");
    console.fill("#f-accounts_excluded", "root");
    console.press("Create");
    console.at("/ui/rules/lab-not-root");
    let rule = console.admin().get("/api/v1/rules/lab-not-root").json;
    assert_eq!(rule["accounts"], json!(["@ALL", "!root"]), "{rule}");
    console.screenshot("rule");
    // Allowed as admin.
    console.go("/ui/tester?user=audrey&asset=lab-01&account=admin&protocol=ssh&action=connect");
    assert_eq!(console.text("#decision"), "Allowed", "{}", console.source());
    console.screenshot("tester");
    // Denied as root, with the reason rule by rule.
    console.go("/ui/tester?user=audrey&asset=lab-01&account=root&protocol=ssh&action=connect");
    assert_eq!(console.text("#decision"), "Denied");
    let explanation = console.text("#explanation");
    assert!(
        explanation.contains("lab-not-root") && explanation.contains("account_not_granted"),
        "{explanation}"
    );
    // The same through the form.
    console.go("/ui/tester");
    console.fill("#f-user", "audrey");
    console.fill("#f-asset", "lab-01");
    console.fill("#f-account", "admin");
    console.fill("#f-protocol", "ssh");
    console.press("Test");
    assert_eq!(console.text("#decision"), "Allowed");
    // Deactivate and clone.
    console.go("/ui/rules/lab-not-root");
    console.press("Deactivate");
    assert_eq!(
        console.admin().get("/api/v1/rules/lab-not-root").json["active"],
        false
    );
    console.press("Clone");
    assert_eq!(console.path(), "/ui/rules/lab-not-root-copy/edit");
    console.go("/ui/rules");
    console.screenshot("rules");
}

#[test]
fn import_users_from_the_template_with_a_dry_run_by_row_and_export_groups_as_xlsx() {
    let console = Console::start();
    console.sign_in("root-admin", None);
    console.go("/ui/transfer");
    console.screenshot("transfer");
    // The template, as the page links it.
    let admin = console.admin();
    let csrf = console.csrf();
    let cookies = console
        .runtime
        .block_on(console.browser.get_all_cookies())
        .expect("cookies");
    let cookie: Vec<String> = cookies
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    let client = reqwest::blocking::Client::new();
    let template = client
        .get(format!(
            "{}/ui/transfer/users/template?format=csv",
            console.base
        ))
        .header("cookie", cookie.join("; "))
        .send()
        .expect("the template");
    assert_eq!(template.status().as_u16(), 200);
    let template = template.text().expect("CSV");
    let header = template.lines().next().expect("a header").to_owned();
    let columns: Vec<&str> = header.split(',').collect();
    let row = |username: &str, email: &str| {
        columns
            .iter()
            .map(|column| {
                match column
                    .trim_start_matches('\u{feff}')
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "username" => username.to_owned(),
                    "email" => email.to_owned(),
                    "name" => format!("{username} imported"),
                    "active" => "true".to_owned(),
                    _ => String::new(),
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let dir = tempfile::tempdir().expect("a directory");
    let bad = dir.path().join("users.csv");
    std::fs::write(
        &bad,
        format!(
            "{header}\n{}\n{}\n",
            row("imp-one", "one@example.com"),
            row("imp-two", "not-an-email")
        ),
    )
    .expect("write");
    let upload = |path: &Path| {
        console.go("/ui/transfer");
        console
            .runtime
            .block_on(async {
                console
                    .browser
                    .find(Locator::Css("#f-file-users"))
                    .await?
                    .send_keys(&path.display().to_string())
                    .await
            })
            .expect("choose the file");
        console.press("Import users");
    };
    let revision = admin.revision();
    upload(&bad);
    let problems = console.text("#import-problems");
    assert!(
        problems.contains("3") && problems.contains("email"),
        "{problems}"
    );
    assert!(console.text("#problem").contains("nothing was imported"));
    console.screenshot("import-problems");
    assert_eq!(admin.revision(), revision, "a refused file writes nothing");
    assert_eq!(admin.get("/api/v1/users/imp-one").status, 404);
    // Fixed: the dry run lists each row, then the import writes.
    let good = dir.path().join("users-fixed.csv");
    std::fs::write(
        &good,
        format!(
            "{header}\n{}\n{}\n",
            row("imp-one", "one@example.com"),
            row("imp-two", "two@example.com")
        ),
    )
    .expect("write");
    upload(&good);
    assert!(console.text("#import-result").contains("Dry run"));
    assert!(console.text("#import-rows").contains("imp-two"));
    assert_eq!(
        admin.get("/api/v1/users/imp-one").status,
        404,
        "a dry run writes nothing"
    );
    console.go("/ui/transfer");
    console.click("#f-dry-users");
    console
        .runtime
        .block_on(async {
            console
                .browser
                .find(Locator::Css("#f-file-users"))
                .await?
                .send_keys(&good.display().to_string())
                .await
        })
        .expect("choose the file");
    console.press("Import users");
    assert!(
        console
            .text("#import-result")
            .contains("Imported: 2 created"),
        "{}",
        console.source()
    );
    assert_eq!(
        admin.get("/api/v1/users/imp-two").json["email"],
        "two@example.com"
    );
    // Groups as XLSX.
    let export = client
        .get(format!(
            "{}/ui/transfer/groups/export?format=xlsx",
            console.base
        ))
        .header("cookie", cookie.join("; "))
        .send()
        .expect("the export");
    assert_eq!(export.status().as_u16(), 200);
    assert!(
        export.headers()["content-disposition"]
            .to_str()
            .expect("text")
            .contains("groups.xlsx")
    );
    let bytes = export.bytes().expect("bytes");
    assert!(bytes.starts_with(b"PK"), "an XLSX is a zip");
    let mut workbook: calamine::Xlsx<_> =
        calamine::open_workbook_from_rs(std::io::Cursor::new(bytes.to_vec())).expect("an XLSX");
    let sheet = calamine::Reader::worksheet_range_at(&mut workbook, 0)
        .expect("a sheet")
        .expect("readable");
    assert!(
        sheet
            .rows()
            .any(|row| row.iter().any(|cell| *cell == "lab-users"))
    );
    let _ = csrf;
}

#[test]
fn read_the_groups_operation_log_and_the_live_log() {
    let console = Console::start();
    console.sign_in("root-admin", None);
    let admin = console.admin();
    admin.post(
        "/api/v1/groups/lab-users/members",
        &json!({"user": "audrey", "expires_at": "2032-01-01T00:00:00Z"}),
    );
    console.go("/ui/groups/lab-users");
    let log = console.source();
    assert!(log.contains("Operation log"), "{log}");
    let table = console.text("table.log");
    assert!(
        table.contains("membership") && table.contains("token:bootstrap"),
        "{table}"
    );
    assert!(table.contains("create"), "{table}");
    // The operation log, filtered by entity, updates live from the watch stream.
    console.go("/ui/changes?entity=group&name=lab-users");
    let before = console.text("#log-rows");
    assert!(!before.contains("night-owls"));
    std::thread::sleep(Duration::from_millis(500));
    admin.patch_group_description();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if console.text("#log-rows").contains("description") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the live log did not show the change: {}",
            console.text("#log-rows")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    console.screenshot("operation-log");
    console.go("/ui/changes?actor=nobody-at-all");
    assert!(console.exists("#log-empty"));
}

#[test]
fn an_auditor_sees_everything_and_changes_nothing_and_forgeries_are_refused() {
    let console = Console::start();
    let admin = console.admin();
    // Without a session every page redirects to the sign-in form.
    for page in [
        "/ui/users",
        "/ui/groups/lab-users",
        "/ui/rules",
        "/ui/tester",
        "/ui/changes",
        "/ui/me",
        "/ui/me/assets",
        "/ui/transfer",
        "/ui/nodes",
    ] {
        console.go(page);
        assert_eq!(console.path(), "/ui/login", "{page}");
    }
    console.sign_in("audrey", None);
    // Signing in records the sign-in; from here on the auditor writes nothing.
    let revision = admin.revision();
    for page in [
        "/ui/users",
        "/ui/users/paula",
        "/ui/groups",
        "/ui/groups/lab-users",
        "/ui/rules",
        "/ui/rules/paula-lab",
        "/ui/nodes",
        "/ui/assets/lab-01",
        "/ui/changes",
        "/ui/transfer",
    ] {
        console.go(page);
        assert_eq!(console.path(), page);
        let page_source = console.source();
        for control in [
            "Create a user",
            "Create a group",
            "Create a rule",
            ">Edit<",
            "Deactivate",
            "Duplicate",
            "Add member",
            "Set roles on scope",
            "Remove",
            "Clone",
            "Import users",
        ] {
            assert!(
                !page_source.contains(control),
                "{page} shows `{control}` to an auditor"
            );
        }
    }
    console.go("/ui/users/paula");
    // A forged POST with the auditor's own valid session and token: 403.
    let token = console.csrf();
    assert_eq!(
        console.forge("/ui/users", &[("_csrf", &token), ("username", "forged")]),
        403
    );
    assert_eq!(
        console.forge(
            "/ui/users/paula/active",
            &[("_csrf", &token), ("active", "false")]
        ),
        403
    );
    // The auditor's edit page itself is refused.
    console.go("/ui/users/paula/edit");
    assert!(console.source().contains("403"));
    assert_eq!(admin.revision(), revision, "the auditor changed nothing");
    // A request without the CSRF token is refused, even by an administrator.
    console.go("/ui/me");
    console.press("Sign out");
    console.sign_in("root-admin", None);
    console.go("/ui/users/paula");
    assert_eq!(
        console.forge("/ui/users/paula/active", &[("active", "false")]),
        403
    );
    assert_eq!(
        console.forge(
            "/ui/users/paula/active",
            &[("_csrf", "0123"), ("active", "false")]
        ),
        403
    );
    assert_eq!(admin.get("/api/v1/users/paula").json["active"], true);
    // With it, the same request works.
    let token = console.csrf();
    assert_eq!(
        console.forge(
            "/ui/users/paula/active",
            &[("_csrf", &token), ("active", "false")]
        ),
        303
    );
    assert_eq!(admin.get("/api/v1/users/paula").json["active"], false);
}

#[test]
fn a_plain_user_sees_their_assets_and_profile_only() {
    let console = Console::start();
    console.sign_in("paula", None);
    console.at("/ui/me/assets");
    let mine = console.text("#my-assets");
    assert!(
        mine.contains("lab-01") && mine.contains("admin") && mine.contains("ssh"),
        "{mine}"
    );
    console.screenshot("my-assets");
    console.go("/ui/users");
    assert!(console.source().contains("403"));
    console.go("/ui/me");
    console.screenshot("profile");
    // Changing the password ends the session.
    console.fill("#f-password", PASSWORD);
    console.fill("#f-new", "a-brand-new-Passw0rd");
    console.fill("#f-repeat", "a-brand-new-Passw0rd");
    console.press("Change password");
    assert_eq!(console.path(), "/ui/login");
    console.go("/ui/me");
    assert_eq!(console.path(), "/ui/login", "the old session ended");
}

trait Scenario {
    fn patch_group_description(&self) -> Value;
}

impl Scenario for Api {
    fn patch_group_description(&self) -> Value {
        let answer = self.send(
            "PATCH",
            "/api/v1/groups/lab-users",
            Some(&json!({"description": "night-owls"})),
        );
        assert_eq!(answer.status, 200, "{}", answer.text());
        answer.json
    }
}

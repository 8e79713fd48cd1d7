//! A real OpenLDAP `slapd` for tests: a temporary directory with a generated
//! `slapd.conf` (mdb backend; core, cosine, inetorgperson and nis schemas; the
//! syncprov and memberof overlays), started as a plain process on a free loopback
//! port and stopped when dropped. Entries are loaded with `ldapadd` / `ldapmodify`.
//!
//! Needs the Debian packages `slapd` and `ldap-utils` (`.ci/run` installs them).
//! Not part of the public API.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=org";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
pub const ROOT_PASSWORD: &str = "root-secret";
pub const READER_DN: &str = "cn=reader,dc=example,dc=org";
/// The reader's password: tests look for it in logs and status to prove it is absent.
pub const READER_PASSWORD: &str = "Reader-Pa55word-never-logged";
pub const PEOPLE: &str = "ou=people,dc=example,dc=org";
pub const GROUPS: &str = "ou=groups,dc=example,dc=org";
/// The reader's size limit: a search for more entries must page.
pub const SIZE_LIMIT: usize = 500;

const SLAPD: &str = "/usr/sbin/slapd";

/// A running slapd. Stopped (killed) on drop.
pub struct Slapd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("address").port()
}

impl Slapd {
    /// Starts a server holding the base entries (`ou=people`, `ou=groups`) and the
    /// reader account.
    pub fn start() -> Slapd {
        assert!(
            Path::new(SLAPD).exists(),
            "{SLAPD} is missing: install the Debian packages slapd and ldap-utils (.ci/run does)"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(dir.path().join("db")).expect("db dir");
        let root = dir.path().display().to_string();
        let conf = format!(
            r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload syncprov
moduleload memberof
pidfile {root}/slapd.pid
argsfile {root}/slapd.args
sizelimit size.soft={SIZE_LIMIT} size.hard={SIZE_LIMIT} size.prtotal=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
database mdb
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {root}/db
maxsize 1073741824
index objectClass,entryCSN,entryUUID,uid,cn eq
overlay syncprov
syncprov-checkpoint 100 1
overlay memberof
memberof-refint TRUE
"#
        );
        std::fs::write(dir.path().join("slapd.conf"), conf).expect("slapd.conf");
        let mut slapd = Slapd {
            child: None,
            dir,
            port: 0,
        };
        slapd.launch();
        slapd.add(&format!(
            "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n\
             dn: {PEOPLE}\nobjectClass: organizationalUnit\nou: people\n\n\
             dn: {GROUPS}\nobjectClass: organizationalUnit\nou: groups\n\n\
             dn: {READER_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\ncn: reader\nuserPassword: {READER_PASSWORD}\n"
        ));
        slapd
    }

    /// Starts slapd on a free port and waits until it listens. The port is free when
    /// chosen but may be taken (by any socket of a test running beside this one)
    /// before slapd binds it: slapd then exits (with `-d 0`, silently), and is
    /// started again on another port.
    fn launch(&mut self) {
        const ATTEMPTS: usize = 5;
        let mut exits = Vec::new();
        while exits.len() < ATTEMPTS {
            match self.try_launch() {
                Ok(()) => return,
                Err(exit) => exits.push(exit),
            }
        }
        panic!("slapd exited before listening, {ATTEMPTS} times: {exits:?}");
    }

    /// One start: `Err` with slapd's stderr when it exits before listening.
    fn try_launch(&mut self) -> Result<(), String> {
        let port = free_port();
        let child = Command::new(SLAPD)
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("ldap://127.0.0.1:{port}/"))
            .arg("-d")
            .arg("0")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slapd");
        self.child = Some(child);
        self.port = port;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            // slapd writes its pid file once its listeners are bound and its backends
            // started; the port answering alone could be another process holding the
            // port slapd failed to bind (and is about to exit over).
            let listening = self.dir.path().join("slapd.pid").exists()
                && TcpStream::connect(("127.0.0.1", port)).is_ok();
            let child = self.child.as_mut().expect("just started");
            if let Some(status) = child.try_wait().ok().flatten() {
                let mut stderr = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
                self.child = None;
                return Err(format!("{status}: {stderr}"));
            }
            if listening {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "slapd did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file holding the reader's password.
    pub fn password_file(&self) -> PathBuf {
        let path = self.dir.path().join("reader-password");
        std::fs::write(&path, format!("{READER_PASSWORD}\n")).expect("password file");
        path
    }

    fn tool(&self, tool: &str, args: &[&str], ldif: &str) -> String {
        let mut child = Command::new(tool)
            .args(["-x", "-H", &self.url(), "-D", ROOT_DN, "-w", ROOT_PASSWORD])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {tool} (install ldap-utils): {error}"));
        // Written from another thread: the tool answers each entry on stdout, and a
        // full pipe would otherwise block both sides.
        let mut stdin = child.stdin.take().expect("stdin");
        let ldif = ldif.to_owned();
        let writer = std::thread::spawn(move || stdin.write_all(ldif.as_bytes()));
        let output = child.wait_with_output().expect("wait");
        writer.join().expect("writer thread").expect("write ldif");
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `ldapadd` of `ldif`, as the root DN.
    pub fn add(&self, ldif: &str) {
        self.tool("ldapadd", &[], ldif);
    }

    /// `ldapmodify` of `ldif` (with `changetype:` lines), as the root DN.
    pub fn modify(&self, ldif: &str) {
        self.tool("ldapmodify", &[], ldif);
    }

    /// `ldapdelete` of one entry, as the root DN.
    pub fn delete(&self, dn: &str) {
        self.modify(&format!("dn: {dn}\nchangetype: delete\n\n"));
    }

    /// The `entryUUID` of `dn`, read with `ldapsearch`.
    pub fn entry_uuid(&self, dn: &str) -> String {
        let output = Command::new("ldapsearch")
            .args([
                "-x",
                "-LLL",
                "-H",
                &self.url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
            ])
            .args(["-s", "base", "-b", dn, "entryUUID"])
            .output()
            .expect("ldapsearch");
        let text = String::from_utf8_lossy(&output.stdout);
        text.lines()
            .find_map(|line| line.strip_prefix("entryUUID: "))
            .unwrap_or_else(|| panic!("no entryUUID for `{dn}`: {text}"))
            .to_owned()
    }

    /// Stops the server (a later sync cannot connect).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}

/// LDIF of an `inetOrgPerson` under `ou=people`.
pub fn person(uid: &str, cn: &str, mail: Option<&str>) -> String {
    let mut ldif = format!(
        "dn: uid={uid},{PEOPLE}\nobjectClass: inetOrgPerson\nuid: {uid}\ncn: {cn}\nsn: {cn}\n"
    );
    if let Some(mail) = mail {
        ldif.push_str(&format!("mail: {mail}\n"));
    }
    ldif.push('\n');
    ldif
}

/// The DN of a person.
pub fn person_dn(uid: &str) -> String {
    format!("uid={uid},{PEOPLE}")
}

/// The DN of a group.
pub fn group_dn(cn: &str) -> String {
    format!("cn={cn},{GROUPS}")
}

/// LDIF of a `groupOfNames` with these member DNs (at least one).
pub fn group_of_names(cn: &str, members: &[String]) -> String {
    let mut ldif = format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfNames\ncn: {cn}\n");
    for member in members {
        ldif.push_str(&format!("member: {member}\n"));
    }
    ldif.push('\n');
    ldif
}

/// LDIF of a `posixGroup` with these `memberUid`s.
pub fn posix_group(cn: &str, gid: u32, uids: &[&str]) -> String {
    let mut ldif =
        format!("dn: cn={cn},{GROUPS}\nobjectClass: posixGroup\ncn: {cn}\ngidNumber: {gid}\n");
    for uid in uids {
        ldif.push_str(&format!("memberUid: {uid}\n"));
    }
    ldif.push('\n');
    ldif
}

/// LDIF of a `groupOfUniqueNames` with these member DNs.
pub fn group_of_unique_names(cn: &str, members: &[String]) -> String {
    let mut ldif = format!("dn: cn={cn},{GROUPS}\nobjectClass: groupOfUniqueNames\ncn: {cn}\n");
    for member in members {
        ldif.push_str(&format!("uniqueMember: {member}\n"));
    }
    ldif.push('\n');
    ldif
}

/// A source config (TOML) for this server, binding as the reader with the password
/// from a file. `extra` lines go into the `[ldap.<name>]` table.
pub fn source_toml(slapd: &Slapd, name: &str, extra: &str) -> String {
    format!(
        r#"[ldap.{name}]
url = "{url}"
bind_dn = "{READER_DN}"
bind_password_file = "{password}"
timeout_secs = 10
{extra}

[ldap.{name}.users]
base = "{PEOPLE}"

[ldap.{name}.groups]
base = "{GROUPS}"
"#,
        url = slapd.url(),
        password = slapd.password_file().display(),
    )
}

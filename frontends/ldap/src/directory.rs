//! Talking to the directory: connect and bind, paged searches, RFC 4533 refreshOnly
//! searches with a cookie, ranged attribute retrieval, and the stable id of an entry.
//!
//! Every operation runs under the source's timeout. Errors name the source and the
//! server's diagnostic, never the bind password.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use ldap3::adapters::{Adapter, EntriesOnly, PagedResults};
use ldap3::controls::{
    ControlParser, RawControl, RefreshMode, SyncDone, SyncInfo, SyncRequest, SyncState,
};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, ResultEntry, SearchEntry};
use serde::{Deserialize, Serialize};

use crate::config::{Scope, Source};
use crate::error::SyncError;
use crate::range::RangeCursor;

const SYNC_STATE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.2";
const SYNC_DONE_OID: &str = "1.3.6.1.4.1.4203.1.9.1.3";
/// e-syncRefreshRequired: the server cannot serve this cookie; start over.
const SYNC_REFRESH_REQUIRED: u32 = 4096;
/// A filter no entry matches: a refresh with it costs nothing and yields a cookie.
const NOTHING: &str = "(&(objectClass=*)(!(objectClass=*)))";
/// Active Directory's LDAP_MATCHING_RULE_IN_CHAIN.
pub(crate) const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";

/// An entry as the sync keeps it: its DN and the attributes the mapping reads,
/// attribute names lowercased.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    pub dn: String,
    pub attrs: BTreeMap<String, Vec<String>>,
}

impl DirEntry {
    /// The first value of `attribute`, trimmed, if any.
    pub fn first(&self, attribute: &str) -> Option<&str> {
        self.attrs
            .get(&attribute.to_ascii_lowercase())
            .and_then(|values| values.first())
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    pub fn all(&self, attribute: &str) -> &[String] {
        self.attrs
            .get(&attribute.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }
}

/// What one refreshOnly search reported.
#[derive(Debug, Default)]
pub(crate) struct Refresh {
    /// Added or modified entries, by stable id.
    pub changed: Vec<(String, DirEntry)>,
    /// Ids the server says are still there (present phase).
    pub present: HashSet<String>,
    /// Ids the server says are gone (delete phase).
    pub deleted: HashSet<String>,
    /// The refresh ended with a present phase: whatever is neither present nor changed
    /// is gone.
    pub present_phase: bool,
    pub cookie: Option<Vec<u8>>,
}

/// A connection to `source`'s server (StartTLS and its CA as configured), not yet
/// bound; its driver runs on the current runtime until the handle is dropped.
pub(crate) async fn open(source: &Source) -> Result<Ldap, SyncError> {
    let config = &source.config;
    let mut settings = LdapConnSettings::new()
        .set_conn_timeout(source.timeout())
        .set_starttls(config.starttls);
    if let Some(ca_file) = &config.ca_file {
        settings = settings.set_config(tls_config(source, ca_file)?);
    }
    let connect_error = |message: String| SyncError::Connect {
        source_name: source.name.clone(),
        url: config.url.clone(),
        message,
    };
    let (conn, ldap) = tokio::time::timeout(
        source.timeout(),
        LdapConnAsync::with_settings(settings, &config.url),
    )
    .await
    .map_err(|_| connect_error(format!("no answer within {}s", config.timeout_secs)))?
    .map_err(|error| connect_error(error.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = conn.drive().await {
            tracing::debug!(%error, "ldap connection ended");
        }
    });
    Ok(ldap)
}

/// An open, bound connection.
pub(crate) struct Directory {
    ldap: Ldap,
    source: Source,
}

impl Directory {
    pub async fn connect(source: &Source) -> Result<Directory, SyncError> {
        let config = &source.config;
        let mut ldap = open(source).await?;
        let connect_error = |message: String| SyncError::Connect {
            source_name: source.name.clone(),
            url: config.url.clone(),
            message,
        };
        if let (Some(dn), Some(password)) = (&config.bind_dn, &source.password) {
            let bind_error = |message: String| SyncError::Bind {
                source_name: source.name.clone(),
                dn: dn.clone(),
                message,
            };
            let result =
                tokio::time::timeout(source.timeout(), ldap.simple_bind(dn, password.expose()))
                    .await
                    .map_err(|_| SyncError::Timeout {
                        source_name: source.name.clone(),
                        seconds: config.timeout_secs,
                    })?
                    .map_err(|error| connect_error(error.to_string()))?;
            if result.rc != 0 {
                return Err(bind_error(describe(result.rc, &result.text)));
            }
        }
        Ok(Directory {
            ldap,
            source: source.clone(),
        })
    }

    fn failed(&self, what: &str, error: LdapError) -> SyncError {
        match error {
            LdapError::Timeout { .. } => SyncError::Timeout {
                source_name: self.source.name.clone(),
                seconds: self.source.config.timeout_secs,
            },
            LdapError::LdapResult { result } => SyncError::Directory {
                source_name: self.source.name.clone(),
                message: format!("{what}: {}", describe(result.rc, &result.text)),
            },
            other => SyncError::Directory {
                source_name: self.source.name.clone(),
                message: format!("{what}: {other}"),
            },
        }
    }

    async fn timed<T>(
        &self,
        what: &str,
        future: impl std::future::Future<Output = Result<T, LdapError>>,
    ) -> Result<T, SyncError> {
        match tokio::time::timeout(self.source.timeout(), future).await {
            Ok(result) => result.map_err(|error| self.failed(what, error)),
            Err(_) => Err(SyncError::Timeout {
                source_name: self.source.name.clone(),
                seconds: self.source.config.timeout_secs,
            }),
        }
    }

    /// Every entry under `base` matching `filter`, a page at a time. `on_entry` sees
    /// each as it arrives (for progress).
    pub async fn paged_search(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        mut on_entry: impl FnMut(),
    ) -> Result<Vec<SearchEntry>, SyncError> {
        let what = format!("search of `{base}` with `{filter}`");
        let page_size = i32::try_from(self.source.config.page_size).unwrap_or(i32::MAX);
        let adapters: Vec<Box<dyn Adapter<String, Vec<String>>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(page_size)),
        ];
        let mut ldap = self.ldap.clone();
        let mut stream = self
            .timed(
                &what,
                ldap.streaming_search_with(adapters, base, scope.ldap(), filter, attrs.to_vec()),
            )
            .await?;
        let mut entries = Vec::new();
        loop {
            let next = self.timed(&what, stream.next()).await?;
            let Some(entry) = next else { break };
            entries.push(SearchEntry::construct(entry));
            on_entry();
        }
        let result = self
            .timed(&what, async { Ok(stream.finish().await) })
            .await?;
        if result.rc != 0 {
            return Err(SyncError::Directory {
                source_name: self.source.name.clone(),
                message: format!("{what}: {}", describe(result.rc, &result.text)),
            });
        }
        Ok(entries)
    }

    /// A refreshOnly content synchronization (RFC 4533) from `cookie`. `Ok(None)` when
    /// the server asks for a full reload (the cookie is too old or unknown).
    pub async fn refresh(
        &mut self,
        base: &str,
        scope: Scope,
        filter: &str,
        attrs: &[String],
        cookie: Option<Vec<u8>>,
        mut on_entry: impl FnMut(),
    ) -> Result<Option<Refresh>, SyncError> {
        let what = format!("content synchronization of `{base}` with `{filter}`");
        let request = SyncRequest {
            mode: RefreshMode::RefreshOnly,
            cookie,
            reload_hint: false,
        };
        let mut ldap = self.ldap.clone();
        ldap.with_controls(RawControl::from(request));
        let mut stream = self
            .timed(
                &what,
                ldap.streaming_search(base, scope.ldap(), filter, attrs.to_vec()),
            )
            .await?;
        let mut refresh = Refresh::default();
        loop {
            let next = self.timed(&what, stream.next()).await?;
            let Some(entry) = next else { break };
            if entry.is_intermediate() {
                match ldap3::controls::parse_syncinfo(entry) {
                    SyncInfo::NewCookie(cookie) => refresh.cookie = Some(cookie),
                    SyncInfo::RefreshDelete { cookie, .. } => {
                        refresh.cookie = cookie.or(refresh.cookie.take());
                    }
                    SyncInfo::RefreshPresent { cookie, .. } => {
                        refresh.cookie = cookie.or(refresh.cookie.take());
                    }
                    SyncInfo::SyncIdSet {
                        cookie,
                        refresh_deletes,
                        sync_uuids,
                    } => {
                        refresh.cookie = cookie.or(refresh.cookie.take());
                        let ids = sync_uuids.iter().filter_map(|raw| uuid_text(raw));
                        if refresh_deletes {
                            refresh.deleted.extend(ids);
                        } else {
                            refresh.present.extend(ids);
                        }
                    }
                }
                continue;
            }
            if entry.is_ref() {
                continue;
            }
            let state = sync_state(&entry);
            let search_entry = SearchEntry::construct(entry);
            let Some(state) = state else { continue };
            let Some(id) = uuid_text(&state.entry_uuid) else {
                continue;
            };
            match state.state {
                ldap3::controls::EntryState::Present => {
                    refresh.present.insert(id);
                }
                ldap3::controls::EntryState::Delete => {
                    refresh.deleted.insert(id);
                }
                ldap3::controls::EntryState::Add | ldap3::controls::EntryState::Modify => {
                    let entry = self.complete(search_entry).await?;
                    refresh.changed.push((id, entry));
                    on_entry();
                }
            }
        }
        let result = self
            .timed(&what, async { Ok(stream.finish().await) })
            .await?;
        if result.rc == SYNC_REFRESH_REQUIRED {
            return Ok(None);
        }
        if result.rc != 0 {
            return Err(SyncError::Directory {
                source_name: self.source.name.clone(),
                message: format!("{what}: {}", describe(result.rc, &result.text)),
            });
        }
        for control in &result.ctrls {
            if control.1.ctype == SYNC_DONE_OID {
                let done: SyncDone = control.1.parse();
                if done.cookie.is_some() {
                    refresh.cookie = done.cookie;
                }
                refresh.present_phase = !done.refresh_deletes;
            }
        }
        Ok(Some(refresh))
    }

    /// A cookie for "now", from a refresh that matches nothing.
    pub async fn current_cookie(&mut self, base: &str) -> Result<Option<Vec<u8>>, SyncError> {
        let refresh = self
            .refresh(base, Scope::Base, NOTHING, &["1.1".to_owned()], None, || {})
            .await?;
        Ok(refresh.and_then(|r| r.cookie))
    }

    /// The entry as kept, with ranged attributes gathered in full.
    pub async fn complete(&mut self, entry: SearchEntry) -> Result<DirEntry, SyncError> {
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut ranged: Vec<String> = Vec::new();
        for (name, values) in &entry.attrs {
            match name.split_once(';') {
                Some((base, options)) if options.to_ascii_lowercase().contains("range=") => {
                    ranged.push(base.to_owned());
                }
                _ => {
                    attrs
                        .entry(name.to_ascii_lowercase())
                        .or_default()
                        .extend(values.iter().cloned());
                }
            }
        }
        for (name, values) in &entry.bin_attrs {
            // Binary values (objectGUID) are kept as lowercase hex.
            attrs
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(values.iter().map(|v| hex(v)));
        }
        for attribute in ranged {
            let mut cursor = RangeCursor::start(&entry.attrs, &attribute);
            while let Some(request) = cursor.next_request().map(str::to_owned) {
                let what = format!("ranged retrieval of `{request}` on `{}`", entry.dn);
                let mut ldap = self.ldap.clone();
                let (answers, _) = self
                    .timed(&what, async {
                        ldap.search(
                            &entry.dn,
                            ldap3::Scope::Base,
                            "(objectClass=*)",
                            vec![request.clone()],
                        )
                        .await?
                        .success()
                    })
                    .await?;
                let answer = answers
                    .into_iter()
                    .next()
                    .map(|e| SearchEntry::construct(e).attrs)
                    .unwrap_or_default();
                cursor.feed(&answer).map_err(|_| SyncError::Directory {
                    source_name: self.source.name.clone(),
                    message: format!("{what}: the server never ended the range"),
                })?;
            }
            attrs.insert(attribute.to_ascii_lowercase(), cursor.into_values());
        }
        Ok(DirEntry {
            dn: entry.dn,
            attrs,
        })
    }

    /// Active Directory: the DNs of every user (transitively) in `group_dn`, asked of
    /// the server with LDAP_MATCHING_RULE_IN_CHAIN.
    pub async fn in_chain_members(&mut self, group_dn: &str) -> Result<Vec<String>, SyncError> {
        let users = self.source.config.users.clone();
        let filter = format!(
            "(&{}(memberOf:{IN_CHAIN_RULE}:={}))",
            users.filter,
            escape_filter_value(group_dn)
        );
        let entries = self
            .paged_search(
                &users.base,
                users.scope,
                &filter,
                &["1.1".to_owned()],
                || {},
            )
            .await?;
        Ok(entries.into_iter().map(|e| e.dn).collect())
    }

    pub async fn close(mut self) {
        let _ = tokio::time::timeout(self.source.timeout(), self.ldap.unbind()).await;
    }
}

fn sync_state(entry: &ResultEntry) -> Option<SyncState> {
    entry
        .1
        .iter()
        .find(|control| control.1.ctype == SYNC_STATE_OID)
        .and_then(|control| control.1.val.as_deref())
        .map(SyncState::parse)
}

/// The text form of a 16-byte UUID in network order (entryUUID in sync controls).
fn uuid_text(raw: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = raw.try_into().ok()?;
    Some(uuid::Uuid::from_bytes(bytes).to_string())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The stable id of `entry` from `attribute`: `entryUUID` as written, `objectGUID`
/// (16 bytes, the first three fields little-endian) as a UUID.
pub fn stable_id(entry: &SearchEntry, attribute: &str) -> Option<String> {
    let is_guid = attribute.eq_ignore_ascii_case("objectGUID");
    for (name, values) in &entry.bin_attrs {
        if name.eq_ignore_ascii_case(attribute) {
            let raw = values.first()?;
            return if is_guid {
                object_guid(raw)
            } else {
                Some(hex(raw))
            };
        }
    }
    for (name, values) in &entry.attrs {
        if name.eq_ignore_ascii_case(attribute) {
            let value = values.first()?;
            return if is_guid {
                // A GUID whose 16 bytes happen to be valid UTF-8 arrives as text.
                object_guid(value.as_bytes())
            } else {
                Some(value.trim().to_ascii_lowercase())
            };
        }
    }
    None
}

/// Active Directory's objectGUID (16 bytes, Microsoft's mixed-endian GUID layout) in
/// the usual text form: `{3F2504E0-4F89-11D3-9A0C-0305E82C3301}` is stored as
/// `E0 04 25 3F 89 4F D3 11 9A 0C 03 05 E8 2C 33 01`.
pub fn object_guid(raw: &[u8]) -> Option<String> {
    let bytes: [u8; 16] = raw.try_into().ok()?;
    Some(uuid::Uuid::from_bytes_le(bytes).to_string())
}

/// Escapes a value for use inside a filter (RFC 4515).
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// An LDAP result code in words.
fn describe(rc: u32, text: &str) -> String {
    let name = match rc {
        1 => "operations error",
        3 => "time limit exceeded",
        4 => "size limit exceeded",
        11 => "administrative limit exceeded",
        32 => "no such object",
        34 => "invalid DN syntax",
        48 => "inappropriate authentication",
        49 => "invalid credentials",
        50 => "insufficient access rights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwilling to perform",
        87 => "filter error",
        _ => "error",
    };
    if text.trim().is_empty() {
        format!("{name} (result code {rc})")
    } else {
        format!("{name} (result code {rc}): {}", text.trim())
    }
}

fn tls_config(
    source: &Source,
    ca_file: &std::path::Path,
) -> Result<Arc<rustls::ClientConfig>, SyncError> {
    let bad = |message: String| {
        SyncError::Config(format!(
            "ldap source `{}`: ca_file `{}`: {message}",
            source.name,
            ca_file.display()
        ))
    };
    let pem = std::fs::read(ca_file).map_err(|error| bad(error.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    let mut n_certs = 0;
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.map_err(|error| bad(error.to_string()))?;
        roots
            .add(&rustls::Certificate(cert.to_vec()))
            .map_err(|error| bad(error.to_string()))?;
        n_certs += 1;
    }
    if n_certs == 0 {
        return Err(bad("holds no PEM certificate".to_owned()));
    }
    let config = rustls::ClientConfig::builder()
        .with_safe_defaults()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Normalizes a DN for comparison: lowercase, no spaces around separators.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',')
        .map(|rdn| rdn.split('=').map(str::trim).collect::<Vec<_>>().join("="))
        .collect::<Vec<_>>()
        .join(",")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_guid_reads_as_microsoft_writes_it() {
        let raw = [
            0xE0, 0x04, 0x25, 0x3F, 0x89, 0x4F, 0xD3, 0x11, 0x9A, 0x0C, 0x03, 0x05, 0xE8, 0x2C,
            0x33, 0x01,
        ];
        assert_eq!(
            object_guid(&raw).unwrap(),
            "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
        );
        assert_eq!(object_guid(&raw[..15]), None);
    }

    #[test]
    fn dns_compare_without_case_or_spaces() {
        assert_eq!(
            normalize_dn("UID=Alice, OU=People ,dc=Example,dc=org"),
            normalize_dn("uid=alice,ou=people,dc=example,dc=org")
        );
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape_filter_value("cn=a(b)*\\"), "cn=a\\28b\\29\\2a\\5c");
    }
}

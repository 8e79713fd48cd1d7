//! The snapshot image: a published snapshot written to a file beside the store, so
//! that an open reads it back instead of rebuilding every derived index.
//!
//! An image can make an open fast, never a decision wrong: [`read`] refuses a
//! missing, truncated, corrupt, foreign, other-version or future-revision image, and
//! the engine then rebuilds from the store. An accepted image is brought up to the
//! store's revision by re-reading every entity the change log names after the
//! image's revision (see `Engine::start`).
//!
//! # Format (version 6), documented in `docs/snapshot.md`
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"PCLSIMG\0"
//!      8     4  format version, u32 little-endian (6)
//!     12     4  flags, u32 (0)
//!     16     8  store id, u64 (the store's META `store_id`)
//!     24     8  revision, u64: the store revision the snapshot reflects
//!     32     8  body length in bytes, u64
//!     40     4  CRC-32 (IEEE) of the body, u32
//!     44     4  reserved (0)
//!     48     …  body
//! ```
//!
//! The body is a sequence of sections, in this order: `next_node_number` and the
//! number of groups (a postcard varint each), then roles, nodes, users, groups, symbols (protocol names and
//! account usernames, by number), the shared asset rule sets, assets, rules, tokens,
//! then the tables. A section is a postcard varint count followed by that many
//! postcard records; entity sections hold one `Option` per dense index, so indexes in
//! derived data stay valid. Bitmaps are in the portable Roaring format. Users and
//! assets are kept as the snapshot keeps them, packed (postcard bytes of the record),
//! beside what their check records need: an open maps the image and leaves each record
//! where it is, borrowed by the snapshot ([`crate::mapped`]), without unpacking or
//! copying any.
//!
//! The tables are the id map, the account index and the name and email indexes of
//! users and assets, each as its shards' hash tables (`CowMap::write_image`,
//! `NameIndex::write_image`): an open checks them and probes them where they lie,
//! inserting nothing, and a write copies only the shards it changes.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use roaring::RoaringBitmap;
use serde::{Deserialize, Serialize};

use crate::mapped::Mapping;
use crate::model::{Asset, EntityKind, Group, Id, Node, Role, Rule, Time, Token, User};
use crate::snapshot::{
    AssetCheck, AssetEntry, CompiledRule, EMAIL_INLINE, GroupEntry, GroupLink, IdMap, MapSizes,
    Member, NameIndex, NodeEntry, Packed, RuleEntry, RuleSet, Slot, Snapshot, TableError,
    TokenEntry, UserCheck, UserEntry, UserRules,
};

const MAGIC: &[u8; 8] = b"PCLSIMG\0";
/// The layout this build writes and reads.
pub(crate) const FORMAT: u32 = 6;
const HEADER: usize = 48;

/// The image file of the store at `store`: `<store>.image`.
pub(crate) fn path_for(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".image");
    PathBuf::from(name)
}

/// Why an image was not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("there is no image")]
    Missing,
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
    #[error("the image is truncated ({found} bytes where its header promises {expected})")]
    Truncated { found: u64, expected: u64 },
    #[error("the image is not a Portcullis snapshot image")]
    NotAnImage,
    #[error("the image has format {found}; this build reads format {FORMAT}")]
    Version { found: u32 },
    #[error("the image belongs to another store")]
    Foreign,
    #[error("the image is at revision {image}, ahead of the store's {store}")]
    Future { image: u64, store: u64 },
    #[error("the image's checksum does not match its contents")]
    Checksum,
    #[error("the image's contents are malformed: {0}")]
    Malformed(String),
}

fn bits(bitmap: &RoaringBitmap) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(bitmap.serialized_size());
    bitmap
        .serialize_into(&mut bytes)
        .expect("INVARIANT: writing to a Vec cannot fail");
    bytes
}

fn unbits(bytes: &[u8]) -> Result<RoaringBitmap, Rejected> {
    RoaringBitmap::deserialize_from(bytes).map_err(|error| Rejected::Malformed(error.to_string()))
}

/// A packed record in an image: its postcard bytes, borrowed from the snapshot when an
/// image is written and from the mapped image when one is read.
struct RecordBytes<'a>(&'a [u8]);

impl Serialize for RecordBytes<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self.0)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for RecordBytes<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&'a [u8]>::deserialize(deserializer).map(RecordBytes)
    }
}

#[derive(Serialize, Deserialize)]
struct UserImage<'a> {
    #[serde(borrow)]
    record: RecordBytes<'a>,
    /// The user's [`UserCheck::valid_until`], so an open need not unpack the record.
    valid_until: Time,
    direct_groups: Vec<(u32, Time)>,
    direct_rules: Vec<u8>,
    rules: Vec<u32>,
    rule_until: Vec<(u32, Time)>,
}

#[derive(Serialize, Deserialize)]
struct GroupImage {
    /// The record without its members, which are `memberships`.
    group: Arc<Group>,
    memberships: Vec<Member>,
    subgroups: Vec<u32>,
    parents: Vec<(u32, Time)>,
    rules: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct NodeImage {
    node: Arc<Node>,
    parent: Option<u32>,
    children: Vec<u32>,
    assets: Vec<u8>,
    rules: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct AssetImage<'a> {
    #[serde(borrow)]
    record: RecordBytes<'a>,
    // What the asset's check record needs, so an open need not unpack the record:
    // protocol names and account usernames by symbol (the symbols section).
    active: bool,
    protocols: Vec<u32>,
    accounts: Vec<u32>,
    nodes: Vec<u32>,
    direct_rules: Vec<u8>,
    /// Index into the shared rule sets section.
    rules: u32,
}

#[derive(Serialize, Deserialize)]
struct RuleImage {
    rule: Arc<Rule>,
    users: Vec<u32>,
    groups: Vec<u32>,
    assets: Vec<u32>,
    nodes: Vec<u32>,
    objects: Vec<u8>,
}

/// Feeds everything written to the CRC too.
struct Summing<W> {
    inner: W,
    crc: crc32fast::Hasher,
    len: u64,
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.crc.update(&bytes[..written]);
        self.len += written as u64;
        Ok(written)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn put<W: Write, T: Serialize + ?Sized>(out: &mut W, value: &T) -> std::io::Result<()> {
    postcard::to_io(value, &mut *out)
        .map(|_| ())
        .map_err(|error| std::io::Error::other(error.to_string()))
}

fn section<W: Write, T, I: Serialize>(
    out: &mut W,
    count: usize,
    items: impl Iterator<Item = T>,
    mut image: impl FnMut(T) -> I,
) -> std::io::Result<()> {
    put(out, &(count as u64))?;
    for item in items {
        put(out, &image(item))?;
    }
    Ok(())
}

/// Writes `snapshot` as the image at `path`, for the store `store_id`: to a
/// temporary file, synced, then renamed over the old image, so a crash leaves the
/// old image or the new one, never half of one.
pub(crate) fn write(snapshot: &Snapshot, store_id: u64, path: &Path) -> std::io::Result<()> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(&[0; HEADER])?;
    let (crc, len) = {
        let mut out = Summing {
            inner: BufWriter::with_capacity(1 << 20, &mut file),
            crc: crc32fast::Hasher::new(),
            len: 0,
        };
        write_body(snapshot, &mut out)?;
        out.flush()?;
        (out.crc, out.len)
    };
    let mut header = Vec::with_capacity(HEADER);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&store_id.to_le_bytes());
    header.extend_from_slice(&snapshot.revision.to_le_bytes());
    header.extend_from_slice(&len.to_le_bytes());
    header.extend_from_slice(&crc.finalize().to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    file.write_all(&header)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    if let Some(directory) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(directory)?.sync_all()?;
    }
    // Writing read every record the snapshot borrows from a mapped image.
    crate::mapped::release_resident();
    Ok(())
}

fn write_body<W: Write>(snapshot: &Snapshot, out: &mut W) -> std::io::Result<()> {
    put(out, &snapshot.next_node_number)?;
    put(out, &snapshot.counts.groups)?;
    section(out, snapshot.roles.len(), snapshot.roles.iter(), |role| {
        role.clone()
    })?;
    section(out, snapshot.nodes.len(), snapshot.nodes.iter(), |entry| {
        entry.as_ref().map(|e| NodeImage {
            node: e.node.clone(),
            parent: e.parent,
            children: e.children.to_vec(),
            assets: bits(&e.assets),
            rules: bits(&e.rules),
        })
    })?;
    let users = snapshot.users.iter().zip(snapshot.user_checks.iter());
    section(out, snapshot.users.len(), users, |(entry, check)| {
        entry.as_ref().map(|e| UserImage {
            record: RecordBytes(e.record.bytes()),
            valid_until: check.valid_until,
            direct_groups: e
                .direct_groups
                .iter()
                .map(|link| (link.group, link.until()))
                .collect(),
            direct_rules: bits(e.direct_rules.get()),
            rules: check.rules.iter().collect(),
            rule_until: check.rule_until.to_vec(),
        })
    })?;
    section(
        out,
        snapshot.groups.len(),
        snapshot.groups.iter(),
        |entry| {
            entry.as_ref().map(|e| GroupImage {
                group: e.group.clone(),
                memberships: e.memberships.to_vec(),
                subgroups: e.subgroups.to_vec(),
                parents: e.parents.to_vec(),
                rules: bits(e.rules.get()),
            })
        },
    )?;
    let symbols = snapshot.symbols.in_order();
    section(out, symbols.len(), symbols, |name| name)?;
    // Assets name their rule set by number; each shared set is written once, before
    // the assets, so an open builds each asset as it arrives.
    let mut set_numbers: std::collections::HashMap<usize, u32> = Default::default();
    let mut sets: Vec<&RuleSet> = Vec::new();
    let numbers: Vec<u32> = snapshot
        .asset_checks
        .iter()
        .map(|check| {
            *set_numbers.entry(check.rules.address()).or_insert_with(|| {
                sets.push(&check.rules);
                (sets.len() - 1) as u32
            })
        })
        .collect();
    section(out, sets.len(), sets.iter(), |set| {
        set.iter().collect::<Vec<u32>>()
    })?;
    let assets = snapshot.assets.iter().zip(snapshot.asset_checks.iter());
    section(
        out,
        snapshot.assets.len(),
        assets.zip(numbers),
        |((entry, check), number)| {
            entry.as_ref().map(|e| AssetImage {
                record: RecordBytes(e.record.bytes()),
                active: check.active,
                protocols: check.protocols().to_vec(),
                accounts: check.accounts().to_vec(),
                nodes: e.nodes.to_vec(),
                direct_rules: bits(e.direct_rules.get()),
                rules: number,
            })
        },
    )?;
    section(out, snapshot.rules.len(), snapshot.rules.iter(), |entry| {
        entry.as_ref().map(|e| RuleImage {
            rule: e.rule.clone(),
            users: e.users.to_vec(),
            groups: e.groups.to_vec(),
            assets: e.assets.to_vec(),
            nodes: e.nodes.to_vec(),
            objects: bits(&e.objects),
        })
    })?;
    section(
        out,
        snapshot.tokens.len(),
        snapshot.tokens.iter(),
        |entry| entry.as_ref().map(|e| (e.token.clone(), e.hash)),
    )?;
    // The large maps, as tables an open probes where they lie.
    snapshot.ids.write_image(out)?;
    snapshot.account_ids.write_image(out)?;
    snapshot.user_names.write_image(out)?;
    snapshot.user_emails.write_image(out)?;
    snapshot.asset_names.write_image(out)
}

/// The maps an image holds as tables (docs/snapshot.md, "Tables"), read in place.
struct Tables {
    ids: IdMap<Slot>,
    account_ids: IdMap<u32>,
    user_names: NameIndex,
    user_emails: NameIndex<EMAIL_INLINE>,
    asset_names: NameIndex,
}

impl Tables {
    fn read(bytes: &mut &'static [u8]) -> Result<Tables, Rejected> {
        let read = |bytes: &mut &'static [u8]| -> Result<Tables, TableError> {
            Ok(Tables {
                ids: IdMap::from_image(bytes)?,
                account_ids: IdMap::from_image(bytes)?,
                user_names: NameIndex::from_image(bytes)?,
                user_emails: NameIndex::from_image(bytes)?,
                asset_names: NameIndex::from_image(bytes)?,
            })
        };
        read(bytes).map_err(Rejected::Malformed)
    }
}

/// Reads the image at `path` for the store `store_id` at revision `store_revision`.
pub(crate) fn read(path: &Path, store_id: u64, store_revision: u64) -> Result<Snapshot, Rejected> {
    let unreadable = |error: std::io::Error| Rejected::Unreadable(error.to_string());
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(Rejected::Missing);
        }
        Err(error) => return Err(unreadable(error)),
    };
    let mapping = Mapping::of(&file).map_err(unreadable)?;
    let bytes = mapping.bytes();
    let length = bytes.len() as u64;
    let Some(header) = bytes.get(..HEADER) else {
        return Err(Rejected::NotAnImage);
    };
    if &header[0..8] != MAGIC {
        return Err(Rejected::NotAnImage);
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let format = word(8);
    if format != FORMAT {
        return Err(Rejected::Version { found: format });
    }
    if long(16) != store_id {
        return Err(Rejected::Foreign);
    }
    let revision = long(24);
    if revision > store_revision {
        return Err(Rejected::Future {
            image: revision,
            store: store_revision,
        });
    }
    let expected = long(32);
    if length - HEADER as u64 != expected {
        return Err(Rejected::Truncated {
            found: length,
            expected: expected.saturating_add(HEADER as u64),
        });
    }
    // Checked before anything borrows from the mapping: a mapping is kept (for good)
    // only for an image whose every byte is as written.
    if crc32fast::hash(&bytes[HEADER..]) != word(40) {
        return Err(Rejected::Checksum);
    }
    let body = &mapping.keep()[HEADER..];
    // One thread decodes the body while this one builds the snapshot from what it
    // decodes: an open uses both cores.
    let decoded = std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(BATCHES_IN_FLIGHT);
        scope.spawn(move || {
            let mut out = Batcher {
                sender,
                batch: Vec::with_capacity(BATCH),
            };
            if let Err(rejected) = decode_body(&mut Cursor { rest: body }, &mut out) {
                out.fail(rejected);
            }
        });
        read_body(Source {
            receiver,
            batch: Vec::new().into_iter(),
        })
    });
    // Decoding read every page of the image; the records it holds are read again
    // only when a view or a write asks for one.
    crate::mapped::release_resident();
    decoded.map(|mut snapshot| {
        snapshot.revision = revision;
        snapshot
    })
}

/// The part of a mapped body not decoded yet.
struct Cursor {
    rest: &'static [u8],
}

impl Cursor {
    fn take<T: Deserialize<'static>>(&mut self) -> Result<T, Rejected> {
        let (value, rest) = postcard::take_from_bytes(self.rest)
            .map_err(|error| Rejected::Malformed(error.to_string()))?;
        self.rest = rest;
        Ok(value)
    }
}

/// Records decoded per message from the decoding thread to the building one.
const BATCH: usize = 1024;
/// Messages the decoder may run ahead of the builder.
const BATCHES_IN_FLIGHT: usize = 16;

/// The record type of a section, taken out of its piece.
trait SectionRecord: Sized {
    fn from_piece(piece: Piece) -> Option<Self>;
}

/// Declares [`Piece`] with one variant per section, each holding that section's
/// record type, and the [`SectionRecord`] impl that takes the record out.
macro_rules! pieces {
    ($($variant:ident($record:ty)),* $(,)?) => {
        /// One decoded piece of the body, in the order of the format.
        enum Piece {
            /// `next_node_number` and the number of groups.
            Start(u64, u64),
            /// A section's record count.
            Count(u64),
            /// After the last section: the tables, read in place.
            Tables(Box<Tables>),
            $($variant($record),)*
            /// The body ended after its last section.
            End,
        }

        $(
            impl SectionRecord for $record {
                fn from_piece(piece: Piece) -> Option<$record> {
                    match piece {
                        Piece::$variant(record) => Some(record),
                        _ => None,
                    }
                }
            }
        )*
    };
}

pieces!(
    Role(Option<Arc<Role>>),
    Node(Option<NodeImage>),
    User(Option<(DecodedHead<User>, UserImage<'static>)>),
    Group(Option<GroupImage>),
    Symbol(Box<str>),
    Asset(Option<(DecodedHead<Asset>, AssetImage<'static>)>),
    Set(Vec<u32>),
    Rule(Option<RuleImage>),
    Token(Option<(Arc<Token>, [u8; 32])>),
);

/// The decoding thread's end of the channel: pieces go in batches.
struct Batcher {
    sender: std::sync::mpsc::SyncSender<Result<Vec<Piece>, Rejected>>,
    batch: Vec<Piece>,
}

/// The builder hung up (it refused something): decoding stops.
struct HungUp;

impl Batcher {
    fn push(&mut self, piece: Piece) -> Result<(), HungUp> {
        self.batch.push(piece);
        if self.batch.len() < BATCH {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        self.sender.send(Ok(full)).map_err(|_| HungUp)
    }

    fn flush(&mut self) -> Result<(), HungUp> {
        let last = std::mem::take(&mut self.batch);
        self.sender.send(Ok(last)).map_err(|_| HungUp)
    }

    /// Hands the builder what was decoded, then why decoding stopped.
    fn fail(mut self, rejected: Rejected) {
        if self.flush().is_ok() {
            let _ = self.sender.send(Err(rejected));
        }
    }
}

/// A user's or asset's record as the decoding thread checked it, with what the
/// building thread needs of its head.
struct DecodedHead<T> {
    record: Packed<T>,
    id: Id,
    /// [`UserCheck::name_hash`] of a user's name (0 for an asset).
    username_hash: u64,
}

/// Why decoding stopped early.
enum Stop {
    HungUp,
    Rejected(Rejected),
}

impl From<HungUp> for Stop {
    fn from(_: HungUp) -> Stop {
        Stop::HungUp
    }
}

impl From<Rejected> for Stop {
    fn from(rejected: Rejected) -> Stop {
        Stop::Rejected(rejected)
    }
}

/// Decodes the body in the order of the format (see the module docs).
fn decode_body(reader: &mut Cursor, out: &mut Batcher) -> Result<(), Rejected> {
    match decode_sections(reader, out) {
        Ok(()) | Err(Stop::HungUp) => Ok(()),
        Err(Stop::Rejected(rejected)) => Err(rejected),
    }
}

/// Hands each record of a section on as a piece.
fn decode_section<T: Deserialize<'static>>(
    reader: &mut Cursor,
    out: &mut Batcher,
    mut piece: impl FnMut(T) -> Result<Piece, Rejected>,
) -> Result<(), Stop> {
    let count: u64 = reader.take()?;
    out.push(Piece::Count(count))?;
    for _ in 0..count {
        out.push(piece(reader.take()?)?)?;
    }
    Ok(())
}

/// Decodes every section, then checks the tables (on the thread that has time for
/// it): they go to the building thread last, as [`Piece::Tables`].
fn decode_sections(reader: &mut Cursor, out: &mut Batcher) -> Result<(), Stop> {
    let number = reader.take()?;
    // Every group comes from a record of at least a few bytes: a count read from a
    // file sizes nothing beyond what the file could hold.
    let groups = reader.take::<u64>()?.min(reader.rest.len() as u64 / 4);
    out.push(Piece::Start(number, groups))?;
    decode_section(reader, out, |role| Ok(Piece::Role(role)))?;
    decode_section(reader, out, |node| Ok(Piece::Node(node)))?;
    decode_section(reader, out, |user: Option<UserImage<'static>>| {
        let decoded = match user {
            Some(u) => {
                let record = Packed::mapped_user(u.record.0).map_err(Rejected::Malformed)?;
                let head = record.head();
                let (id, username_hash) = (head.id, UserCheck::name_hash(head.username));
                let head = DecodedHead {
                    record,
                    id,
                    username_hash,
                };
                Some((head, u))
            }
            None => None,
        };
        Ok(Piece::User(decoded))
    })?;
    decode_section(reader, out, |group| Ok(Piece::Group(group)))?;
    decode_section(reader, out, |symbol| Ok(Piece::Symbol(symbol)))?;
    decode_section(reader, out, |set| Ok(Piece::Set(set)))?;
    decode_section(reader, out, |asset: Option<AssetImage<'static>>| {
        let decoded = match asset {
            Some(a) => {
                let record = Packed::mapped_asset(a.record.0).map_err(Rejected::Malformed)?;
                let id = record.id();
                let head = DecodedHead {
                    record,
                    id,
                    username_hash: 0,
                };
                Some((head, a))
            }
            None => None,
        };
        Ok(Piece::Asset(decoded))
    })?;
    decode_section(reader, out, |rule| Ok(Piece::Rule(rule)))?;
    decode_section(reader, out, |token| Ok(Piece::Token(token)))?;
    crate::mapped::keep_resident(reader.rest);
    let tables = Tables::read(&mut reader.rest)?;
    let trailing = reader.rest.len();
    if trailing != 0 {
        let trailing = Rejected::Malformed(format!("{trailing} bytes follow the last section"));
        return Err(trailing.into());
    }
    out.push(Piece::Tables(Box::new(tables)))?;
    out.push(Piece::End)?;
    out.flush()?;
    Ok(())
}

/// The building thread's end of the channel.
struct Source {
    receiver: std::sync::mpsc::Receiver<Result<Vec<Piece>, Rejected>>,
    batch: std::vec::IntoIter<Piece>,
}

impl Source {
    fn next(&mut self) -> Result<Piece, Rejected> {
        loop {
            if let Some(piece) = self.batch.next() {
                return Ok(piece);
            }
            match self.receiver.recv() {
                Ok(batch) => self.batch = batch?.into_iter(),
                // The decoder stops only after an error or the end, both sent.
                Err(_) => return Err(Rejected::Malformed("the image ended early".into())),
            }
        }
    }

    /// A section's records, each taken out of its piece.
    fn section<T: SectionRecord>(
        &mut self,
        mut each: impl FnMut(T) -> Result<(), Rejected>,
    ) -> Result<(), Rejected> {
        let misplaced = || Rejected::Malformed("a section is out of place".into());
        let Piece::Count(count) = self.next()? else {
            return Err(misplaced());
        };
        for _ in 0..count {
            each(T::from_piece(self.next()?).ok_or_else(misplaced)?)?;
        }
        Ok(())
    }
}

/// Builds the snapshot from the pieces of a body.
fn read_body(mut reader: Source) -> Result<Snapshot, Rejected> {
    let Piece::Start(number, groups) = reader.next()? else {
        return Err(Rejected::Malformed(
            "the body does not start as an image's".into(),
        ));
    };
    // The large maps come whole from the tables (Piece::Tables).
    let mut snap = Snapshot::sized(MapSizes {
        groups,
        ..MapSizes::default()
    });
    snap.next_node_number = number;
    // The ids are in the image's id table.
    let register = |snap: &mut Snapshot, kind: EntityKind| {
        *snap.counts.get_mut(kind) += 1;
    };
    reader.section(|role: Option<Arc<Role>>| {
        let index = snap.roles.len();
        if let Some(role) = &role {
            register(&mut snap, EntityKind::Role);
            snap.role_names.insert(&role.name, index as u32);
        }
        snap.roles.push(role);
        Ok(())
    })?;
    reader.section(|node: Option<NodeImage>| {
        let entry = match node {
            Some(n) => {
                register(&mut snap, EntityKind::Node);
                Some(Arc::new(NodeEntry {
                    node: n.node,
                    parent: n.parent,
                    children: n.children.into(),
                    assets: unbits(&n.assets)?,
                    rules: unbits(&n.rules)?,
                }))
            }
            None => None,
        };
        snap.nodes.push(entry);
        Ok(())
    })?;
    reader.section(|user: Option<(DecodedHead<User>, UserImage)>| {
        let entry = match user {
            Some((head, u)) => {
                snap.counts.users += 1;
                snap.user_checks.push(UserCheck {
                    valid_until: u.valid_until,
                    rules: UserRules::from_sorted(u.rules),
                    rule_until: u.rule_until.into(),
                    username_hash: head.username_hash,
                });
                Some(Arc::new(UserEntry {
                    id: head.id,
                    record: head.record,
                    direct_groups: u
                        .direct_groups
                        .into_iter()
                        .map(|(group, until)| GroupLink::new(group, until))
                        .collect(),
                    direct_rules: unbits(&u.direct_rules)?.into(),
                }))
            }
            None => {
                snap.user_checks.push(UserCheck::absent());
                None
            }
        };
        snap.users.push(entry);
        Ok(())
    })?;
    reader.section(|group: Option<GroupImage>| {
        let index = snap.groups.len();
        let entry = match group {
            Some(g) => {
                register(&mut snap, EntityKind::Group);
                snap.group_names.insert(&g.group.name, index as u32);
                Some(Arc::new(GroupEntry {
                    group: g.group,
                    memberships: g.memberships.into(),
                    subgroups: g.subgroups.into(),
                    parents: g.parents.into(),
                    rules: unbits(&g.rules)?.into(),
                }))
            }
            None => None,
        };
        snap.groups.push(entry);
        Ok(())
    })?;
    reader.section(|name: Box<str>| {
        let number = snap.symbols.len();
        if snap.symbols.intern(&name) as usize != number {
            return Err(Rejected::Malformed(format!(
                "symbol `{name}` appears twice"
            )));
        }
        Ok(())
    })?;
    let mut sets: Vec<RuleSet> = Vec::new();
    reader.section(|set: Vec<u32>| {
        sets.push(RuleSet::from_sorted(set));
        Ok(())
    })?;
    let mut active = RoaringBitmap::new();
    reader.section(|asset: Option<(DecodedHead<Asset>, AssetImage)>| {
        let index = snap.assets.len();
        let entry = match asset {
            Some((head, a)) => {
                snap.counts.assets += 1;
                if a.active {
                    active.insert(index as u32);
                }
                let rules = sets.get(a.rules as usize).cloned().ok_or_else(|| {
                    Rejected::Malformed("an asset names a missing rule set".into())
                })?;
                let symbols = snap.symbols.len();
                if a.protocols
                    .iter()
                    .chain(&a.accounts)
                    .any(|&s| s as usize >= symbols)
                {
                    return Err(Rejected::Malformed(
                        "an asset names a missing symbol".into(),
                    ));
                }
                snap.asset_checks
                    .push(AssetCheck::new(a.active, a.protocols, a.accounts, rules));
                Some(Arc::new(AssetEntry {
                    id: head.id,
                    record: head.record,
                    nodes: a.nodes.into(),
                    direct_rules: unbits(&a.direct_rules)?.into(),
                }))
            }
            None => {
                snap.asset_checks.push(AssetCheck::absent());
                None
            }
        };
        snap.assets.push(entry);
        Ok(())
    })?;
    snap.active_assets = Arc::new(active);
    reader.section(|rule: Option<RuleImage>| {
        let index = snap.rules.len();
        let entry = match rule {
            Some(r) => {
                register(&mut snap, EntityKind::Rule);
                snap.rule_names.insert(&r.rule.name, index as u32);
                Some(Arc::new(RuleEntry {
                    compiled: CompiledRule::new(&r.rule, &mut snap.symbols),
                    rule: r.rule,
                    users: r.users.into(),
                    groups: r.groups.into(),
                    assets: r.assets.into(),
                    nodes: r.nodes.into(),
                    objects: unbits(&r.objects)?,
                }))
            }
            None => None,
        };
        snap.rules.push(entry);
        Ok(())
    })?;
    reader.section(|token: Option<(Arc<Token>, [u8; 32])>| {
        let index = snap.tokens.len();
        let entry = match token {
            Some((token, hash)) => {
                register(&mut snap, EntityKind::Token);
                snap.token_names.insert(&token.name, index as u32);
                snap.token_hashes.insert(hash, index as u32);
                Some(TokenEntry { token, hash })
            }
            None => None,
        };
        snap.tokens.push(entry);
        Ok(())
    })?;
    let Piece::Tables(tables) = reader.next()? else {
        return Err(Rejected::Malformed("a section is out of place".into()));
    };
    let tables = *tables;
    if tables.ids.len() as u64 != snap.counts.total() {
        return Err(Rejected::Malformed(
            "the id table holds another number of entities than the sections".into(),
        ));
    }
    snap.ids = tables.ids;
    snap.user_names = tables.user_names;
    snap.user_emails = tables.user_emails;
    snap.asset_names = tables.asset_names;
    snap.account_ids = tables.account_ids;
    match reader.next()? {
        Piece::End => Ok(snap),
        _ => Err(Rejected::Malformed("a section is out of place".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_from_a_mapped_image_outlive_its_file() {
        let engine = crate::Engine::in_memory().expect("an engine opens");
        let actor = crate::Actor::system("test");
        let mut user = crate::UserSpec::new("ada");
        user.email = Some("ada@example.org".into());
        let asset = crate::AssetSpec::new("db-01");
        engine
            .write(
                &actor,
                vec![
                    crate::Op::Create(crate::Spec::User(user)),
                    crate::Op::Create(crate::Spec::Asset(asset)),
                ],
            )
            .expect("the estate is written");
        let snapshot = engine.snapshot();
        let directory = tempfile::tempdir().expect("a temporary directory");
        let path = directory.path().join("store.image");
        write(&snapshot, 7, &path).expect("the image is written");
        let opened = read(&path, 7, snapshot.revision()).expect("the image reads");
        let mapped = |snap: &Snapshot| {
            let users = snap.users.iter().flatten().map(|e| e.record.is_mapped());
            let assets = snap.assets.iter().flatten().map(|e| e.record.is_mapped());
            users.chain(assets).collect::<Vec<bool>>()
        };
        assert_eq!(
            mapped(&opened),
            [true, true],
            "records borrow from the image"
        );
        assert_eq!(
            mapped(&snapshot),
            [false, false],
            "a written snapshot owns them"
        );
        assert!(
            opened.mapped_table_bytes() > 0 && snapshot.mapped_table_bytes() == 0,
            "the id map and name indexes are probed in the image"
        );
        // The image replaced by a damaged one and then deleted: what the read snapshot
        // borrows is the file it mapped, unchanged.
        let mut bytes = std::fs::read(&path).expect("the image reads");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let damaged = directory.path().join("damaged");
        std::fs::write(&damaged, &bytes).expect("a damaged copy is written");
        std::fs::rename(&damaged, &path).expect("the image is replaced");
        assert_eq!(
            read(&path, 7, snapshot.revision()).err(),
            Some(Rejected::Checksum)
        );
        // Tables another hash function placed (as a new foldhash would): the id map's
        // seed changed, the checksum made good. Refused, never probed.
        let reseeded_path = directory.path().join("reseeded.image");
        write(&snapshot, 7, &reseeded_path).expect("the image is written");
        let mut reseeded = std::fs::read(&reseeded_path).expect("the image reads");
        let seed = snapshot.ids.seed().to_le_bytes();
        let at = reseeded
            .windows(8)
            .position(|window| window == seed)
            .expect("the image holds the id map's seed");
        reseeded[at] ^= 1;
        let crc = crc32fast::hash(&reseeded[HEADER..]);
        reseeded[40..44].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&reseeded_path, &reseeded).expect("the damaged image is written");
        match read(&reseeded_path, 7, snapshot.revision()) {
            Err(Rejected::Malformed(why)) => assert!(why.contains("hash"), "{why}"),
            other => panic!(
                "tables placed by another hash were not refused: {:?}",
                other.err()
            ),
        }
        std::fs::remove_file(&path).expect("the image is deleted");
        assert!(opened.check_invariants().is_ok());
        assert_eq!(opened.canonical(), snapshot.canonical());
        let user = opened.user("ada").expect("ada is in the image");
        assert_eq!(user.email.as_deref(), Some("ada@example.org"));
    }
}

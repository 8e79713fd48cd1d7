//! What callers write: one spec per entity, with references by name or id.
//!
//! A spec is the writable part of an entity. The engine resolves its references,
//! validates it against the current state and turns it into the stored entity; the
//! reverse conversion (ids back to names) gives the spec form of any entity, which is
//! what a PATCH edits and what a clone copies.

use serde::{Deserialize, Serialize};

use crate::model::{
    AccountSelector, Actions, Attributes, Effect, EntityKind, Id, Mfa, Protocol, ProtocolFilter,
    RoleAssignment, SecretKind, Source, Time,
};

fn yes() -> bool {
    true
}

fn default_system_roles() -> Vec<String> {
    vec!["user".to_owned()]
}

fn default_parent() -> String {
    "/Default".to_owned()
}

fn default_nodes() -> Vec<String> {
    vec!["/Default".to_owned()]
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub username: String,
    /// Defaults to the username.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub expires_at: Option<Time>,
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Free-form attributes front-ends keep (see [`Attributes`]); replaced whole.
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default = "default_system_roles")]
    pub system_roles: Vec<String>,
    #[serde(default)]
    pub mfa: Mfa,
    #[serde(default)]
    pub must_change_password: bool,
    #[serde(default)]
    pub description: String,
    /// Write-only: stored as an argon2id hash, never read back.
    #[serde(default, skip_serializing)]
    pub password: Option<Password>,
}

/// A password in transit. Its `Debug` form hides it, so it never reaches a log.
/// The engine hashes it (argon2id) before it reaches the writer.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "String")]
pub struct Password(pub(crate) PasswordForm);

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum PasswordForm {
    Plain(String),
    /// A PHC string from argon2id.
    Hashed(String),
}

impl Password {
    pub fn new(plain: impl Into<String>) -> Password {
        Password(PasswordForm::Plain(plain.into()))
    }
}

impl Password {
    /// The same password, checked against `policy` and hashed if it was plaintext.
    pub(crate) fn hashed_under(
        self,
        policy: &crate::CredentialPolicy,
    ) -> Result<Password, crate::ValidationError> {
        match self.0 {
            PasswordForm::Plain(plain) => {
                Ok(Password(PasswordForm::Hashed(policy.hash_new(&plain)?)))
            }
            hashed @ PasswordForm::Hashed(_) => Ok(Password(hashed)),
        }
    }

    /// The same password checked against `policy` and, if plaintext, replaced by a
    /// placeholder hash: for a dry run ([`crate::Engine::validate`]), which stores
    /// nothing and must not pay for argon2.
    pub(crate) fn checked_under(
        self,
        policy: &crate::CredentialPolicy,
    ) -> Result<Password, crate::ValidationError> {
        match self.0 {
            PasswordForm::Plain(plain) => {
                policy.check(&plain)?;
                Ok(Password(PasswordForm::Hashed(String::new())))
            }
            hashed @ PasswordForm::Hashed(_) => Ok(Password(hashed)),
        }
    }
}

impl From<String> for Password {
    fn from(plain: String) -> Password {
        Password::new(plain)
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

impl UserSpec {
    /// A spec with every field at its default.
    pub fn new(username: impl Into<String>) -> UserSpec {
        UserSpec {
            id: None,
            username: username.into(),
            name: String::new(),
            email: None,
            phone: None,
            active: true,
            expires_at: None,
            source: Source::Local,
            external_id: None,
            attributes: Attributes::default(),
            system_roles: default_system_roles(),
            mfa: Mfa::Disabled,
            must_change_password: false,
            description: String::new(),
            password: None,
        }
    }
}

/// A user in a group: a username or id, or the long form with an expiry. Unknown
/// fields in the long form are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum MemberSpec {
    Name(String),
    #[serde(deserialize_with = "strict::member")]
    Detailed {
        user: String,
        #[serde(default)]
        expires_at: Option<Time>,
        /// Defaults to the group's source.
        #[serde(default)]
        source: Option<Source>,
    },
}

impl MemberSpec {
    pub fn user(&self) -> &str {
        match self {
            MemberSpec::Name(user) | MemberSpec::Detailed { user, .. } => user,
        }
    }
}

/// A group in a group: a name or id, or the long form with an expiry. Unknown fields
/// in the long form are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SubgroupSpec {
    Name(String),
    #[serde(deserialize_with = "strict::subgroup")]
    Detailed {
        group: String,
        #[serde(default)]
        expires_at: Option<Time>,
        #[serde(default)]
        source: Option<Source>,
    },
}

/// The long forms of members, read strictly: serde's untagged variants would
/// otherwise ignore unknown fields.
mod strict {
    use serde::{Deserialize, Deserializer};

    use crate::model::{Source, Time};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Member {
        user: String,
        #[serde(default)]
        expires_at: Option<Time>,
        #[serde(default)]
        source: Option<Source>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Subgroup {
        group: String,
        #[serde(default)]
        expires_at: Option<Time>,
        #[serde(default)]
        source: Option<Source>,
    }

    pub(super) fn member<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<(String, Option<Time>, Option<Source>), D::Error> {
        let Member {
            user,
            expires_at,
            source,
        } = Member::deserialize(deserializer)?;
        Ok((user, expires_at, source))
    }

    pub(super) fn subgroup<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<(String, Option<Time>, Option<Source>), D::Error> {
        let Subgroup {
            group,
            expires_at,
            source,
        } = Subgroup::deserialize(deserializer)?;
        Ok((group, expires_at, source))
    }
}

impl SubgroupSpec {
    pub fn group(&self) -> &str {
        match self {
            SubgroupSpec::Name(group) | SubgroupSpec::Detailed { group, .. } => group,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    #[serde(default)]
    pub members: Vec<MemberSpec>,
    #[serde(default)]
    pub subgroups: Vec<SubgroupSpec>,
    #[serde(default)]
    pub roles: Vec<RoleAssignment>,
    #[serde(default)]
    pub source: Source,
    #[serde(default)]
    pub external_id: Option<String>,
    /// Free-form attributes front-ends keep (see [`Attributes`]); replaced whole.
    #[serde(default)]
    pub attributes: Attributes,
    #[serde(default)]
    pub description: String,
}

impl GroupSpec {
    pub fn new(name: impl Into<String>) -> GroupSpec {
        GroupSpec {
            id: None,
            name: name.into(),
            members: Vec::new(),
            subgroups: Vec::new(),
            roles: Vec::new(),
            source: Source::Local,
            external_id: None,
            attributes: Attributes::default(),
            description: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    /// A path (`/Default/Prod`) or id; defaults to the root.
    #[serde(default = "default_parent")]
    pub parent: String,
    #[serde(default)]
    pub description: String,
}

impl NodeSpec {
    pub fn new(name: impl Into<String>, parent: impl Into<String>) -> NodeSpec {
        NodeSpec {
            id: None,
            name: name.into(),
            parent: parent.into(),
            description: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub username: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub secret_kind: SecretKind,
}

impl AccountSpec {
    pub fn new(username: impl Into<String>) -> AccountSpec {
        AccountSpec {
            id: None,
            username: username.into(),
            privileged: false,
            secret_kind: SecretKind::Password,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    #[serde(default)]
    pub address: String,
    #[serde(default)]
    pub platform: String,
    #[serde(default)]
    pub protocols: Vec<Protocol>,
    /// Paths or ids; defaults to the root.
    #[serde(default = "default_nodes")]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<AccountSpec>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub description: String,
}

impl AssetSpec {
    pub fn new(name: impl Into<String>) -> AssetSpec {
        AssetSpec {
            id: None,
            name: name.into(),
            address: String::new(),
            platform: String::new(),
            protocols: Vec::new(),
            nodes: default_nodes(),
            accounts: Vec::new(),
            active: true,
            description: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    #[serde(default)]
    pub effect: Effect,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub assets: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub accounts: Vec<AccountSelector>,
    /// Defaults to every protocol.
    #[serde(default = "all_protocols")]
    pub protocols: ProtocolFilter,
    /// Defaults to every action.
    #[serde(default = "all_actions")]
    pub actions: Actions,
    /// Defaults to the moment of creation.
    #[serde(default)]
    pub starts_at: Option<Time>,
    #[serde(default)]
    pub expires_at: Option<Time>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub description: String,
}

fn all_protocols() -> ProtocolFilter {
    ProtocolFilter::All
}

fn all_actions() -> Actions {
    Actions::ALL
}

impl RuleSpec {
    pub fn new(name: impl Into<String>) -> RuleSpec {
        RuleSpec {
            id: None,
            name: name.into(),
            effect: Effect::Allow,
            users: Vec::new(),
            groups: Vec::new(),
            assets: Vec::new(),
            nodes: Vec::new(),
            accounts: Vec::new(),
            protocols: ProtocolFilter::All,
            actions: Actions::ALL,
            starts_at: None,
            expires_at: None,
            active: true,
            description: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    #[serde(default)]
    pub id: Option<Id>,
    pub name: String,
    /// The user the token acts for (username or id), if any.
    #[serde(default)]
    pub user: Option<String>,
    pub roles: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<Time>,
    #[serde(default)]
    pub description: String,
}

/// The spec of any entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Spec {
    User(UserSpec),
    Group(GroupSpec),
    Node(NodeSpec),
    Asset(AssetSpec),
    Rule(RuleSpec),
    Role(RoleSpec),
    Token(TokenSpec),
}

impl Spec {
    pub fn kind(&self) -> EntityKind {
        match self {
            Spec::User(_) => EntityKind::User,
            Spec::Group(_) => EntityKind::Group,
            Spec::Node(_) => EntityKind::Node,
            Spec::Asset(_) => EntityKind::Asset,
            Spec::Rule(_) => EntityKind::Rule,
            Spec::Role(_) => EntityKind::Role,
            Spec::Token(_) => EntityKind::Token,
        }
    }

    /// The spec of `kind` written in `json`. Unknown fields are refused.
    pub fn from_json(kind: EntityKind, json: serde_json::Value) -> serde_json::Result<Spec> {
        Ok(match kind {
            EntityKind::User => Spec::User(serde_json::from_value(json)?),
            EntityKind::Group => Spec::Group(serde_json::from_value(json)?),
            EntityKind::Node => Spec::Node(serde_json::from_value(json)?),
            EntityKind::Asset => Spec::Asset(serde_json::from_value(json)?),
            EntityKind::Rule => Spec::Rule(serde_json::from_value(json)?),
            EntityKind::Role => Spec::Role(serde_json::from_value(json)?),
            EntityKind::Token => Spec::Token(serde_json::from_value(json)?),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("specs serialize to JSON")
    }

    /// The name the spec gives its entity (a username for users).
    pub fn name(&self) -> &str {
        match self {
            Spec::User(spec) => &spec.username,
            Spec::Group(spec) => &spec.name,
            Spec::Node(spec) => &spec.name,
            Spec::Asset(spec) => &spec.name,
            Spec::Rule(spec) => &spec.name,
            Spec::Role(spec) => &spec.name,
            Spec::Token(spec) => &spec.name,
        }
    }
}

/// An edit applied to an entity's current spec inside the writer, so that
/// read-modify-write callers (PATCH, SCIM, sync) never lose a concurrent update.
pub type SpecEdit = Box<dyn FnOnce(&mut Spec) -> Result<(), crate::ValidationError> + Send>;

/// One operation of a write. Targets are names (paths for nodes) or ids.
pub enum Op {
    Create(Spec),
    Replace {
        target: String,
        spec: Spec,
    },
    /// Applies `edit` to the target's current spec, then replaces.
    Modify {
        kind: EntityKind,
        target: String,
        edit: SpecEdit,
    },
    /// Deleting an entity also removes it from every group, rule and token that refers
    /// to it (each recorded in the log). Nodes must be empty.
    Delete {
        kind: EntityKind,
        target: String,
    },
    /// Adds a user to a group's direct members, or changes the end and source of that
    /// membership (the source defaults to the group's). Costs one membership, whatever
    /// the size of the group: its log record carries the membership, not the group.
    AddMember {
        group: String,
        member: MemberSpec,
    },
    /// Removes a user from a group's direct members; refused with
    /// [`crate::ValidationError::NotAMember`] when the user is not one.
    RemoveMember {
        group: String,
        user: String,
    },
    /// Records a successful sign-in.
    RecordLogin {
        user: String,
        at: Time,
    },
    /// Records an event in the operation log without changing any entity: `what`
    /// (JSON, never a secret) about `user`, or about no known user (`None`: a sign-in
    /// attempt with an unknown name; the record's id is then the nil id).
    RecordEvent {
        user: Option<Id>,
        what: serde_json::Value,
    },
    /// A precondition: the entity `target` of `kind` is at `version` when the write
    /// applies, or is absent when `version` is `None` (create-if-not-exists). It
    /// changes nothing; when it does not hold, the whole write is refused with
    /// [`crate::ValidationError::VersionMismatch`], so the write's other operations
    /// apply only together with every expectation that holds. Expectations are
    /// checked in order with the other operations, so put them first to check the
    /// state the write starts from (an expectation after an operation on the same
    /// entity sees that operation's effect). Its id in the outcome is the entity's,
    /// or the nil id when it is absent.
    ///
    /// A version is the entity's `updated_at`, which every view of the entity shows
    /// (`updated_at` in the HTTP API, `meta.lastModified` in SCIM), to the
    /// microsecond. Every operation that changes an entity's spec, and every cascade
    /// that edits it (a deletion removing it from a group or rule, a membership added
    /// or removed), sets it to the time of the write, and the writer gives each write
    /// group a time after the previous group's, so an entity read at a version and
    /// changed since is at another. Limits: writes in one group share one time (so
    /// two changes of one entity within a group leave it at one version; a write that
    /// read the version before the first of them still sees a mismatch), the order
    /// holds within one run of the engine (a clock set back between runs could, in
    /// principle, repeat a version), and a recorded sign-in (`RecordLogin`) or event
    /// does not change it: they change no field of the spec.
    Expect {
        kind: EntityKind,
        target: String,
        version: Option<Time>,
    },
    /// Hands the user or group `target` to `source` (an identity source taking it
    /// over), when `policy` allows it ([`crate::AdoptionPolicy::may_adopt`], checked
    /// here again): only its `source` changes; its id, memberships (each keeps its
    /// own source), rules, roles, credentials and history stay. Recorded as an
    /// [`crate::Operation::Adopt`] with the entity before and after. An entity
    /// already of `source` is left as it is, with no record.
    Adopt {
        kind: EntityKind,
        target: String,
        source: Source,
        policy: crate::AdoptionPolicy,
    },
    /// Hands the user or group `target` back to `local` (recorded as an
    /// [`crate::Operation::Release`]); refused when it is local already.
    Release {
        kind: EntityKind,
        target: String,
    },
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Op::Create(spec) => f.debug_tuple("Create").field(spec).finish(),
            Op::Replace { target, spec } => f
                .debug_struct("Replace")
                .field("target", target)
                .field("spec", spec)
                .finish(),
            Op::Modify { kind, target, .. } => f
                .debug_struct("Modify")
                .field("kind", kind)
                .field("target", target)
                .finish_non_exhaustive(),
            Op::Delete { kind, target } => f
                .debug_struct("Delete")
                .field("kind", kind)
                .field("target", target)
                .finish(),
            Op::AddMember { group, member } => f
                .debug_struct("AddMember")
                .field("group", group)
                .field("member", member)
                .finish(),
            Op::RemoveMember { group, user } => f
                .debug_struct("RemoveMember")
                .field("group", group)
                .field("user", user)
                .finish(),
            Op::RecordEvent { user, what } => f
                .debug_struct("RecordEvent")
                .field("user", user)
                .field("what", what)
                .finish(),
            Op::RecordLogin { user, at } => f
                .debug_struct("RecordLogin")
                .field("user", user)
                .field("at", at)
                .finish(),
            Op::Expect {
                kind,
                target,
                version,
            } => f
                .debug_struct("Expect")
                .field("kind", kind)
                .field("target", target)
                .field("version", version)
                .finish(),
            Op::Adopt {
                kind,
                target,
                source,
                policy,
            } => f
                .debug_struct("Adopt")
                .field("kind", kind)
                .field("target", target)
                .field("source", source)
                .field("policy", policy)
                .finish(),
            Op::Release { kind, target } => f
                .debug_struct("Release")
                .field("kind", kind)
                .field("target", target)
                .finish(),
        }
    }
}

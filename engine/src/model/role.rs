//! Roles (named sets of permissions) and API tokens.

use serde::{Deserialize, Serialize};

use super::{Id, Time};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub id: Id,
    /// Unique (case-insensitively).
    pub name: String,
    /// Permission strings such as `users.view`. `*` is a name like any other.
    pub permissions: Vec<String>,
    /// Built-in roles are created with the store and cannot be changed or deleted.
    pub builtin: bool,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

/// The resources the admin API manages; each has `.view`, `.add`, `.change`, `.delete`.
pub const RESOURCES: [&str; 8] = [
    "users", "groups", "nodes", "assets", "rules", "roles", "tokens", "changes",
];
/// The verbs of resource permissions.
pub const VERBS: [&str; 4] = ["view", "add", "change", "delete"];
/// Asking for access decisions (the check, explain and list endpoints).
pub const PERMISSION_CHECK: &str = "decisions.check";
/// Provisioning over SCIM.
pub const PERMISSION_SCIM: &str = "scim.provision";

/// Every permission the engine knows of, in a stable order.
pub fn all_permissions() -> Vec<String> {
    let mut permissions: Vec<String> = RESOURCES
        .iter()
        .flat_map(|resource| VERBS.iter().map(move |verb| format!("{resource}.{verb}")))
        .collect();
    permissions.push(PERMISSION_CHECK.to_owned());
    permissions.push(PERMISSION_SCIM.to_owned());
    permissions
}

/// The built-in roles: `(name, description, permissions)`.
pub fn builtin_roles() -> Vec<(&'static str, &'static str, Vec<String>)> {
    let all = all_permissions();
    // An auditor reads everything, and a decision is a read.
    let views = all
        .iter()
        .filter(|p| p.ends_with(".view") || *p == PERMISSION_CHECK)
        .cloned()
        .collect();
    vec![
        (
            "user",
            "an ordinary user: no administrative permission",
            Vec::new(),
        ),
        ("system-admin", "every permission", all),
        (
            "system-auditor",
            "reads everything (decisions too), changes nothing",
            views,
        ),
        (
            "checker",
            "asks for access decisions (for bastion gateways)",
            vec![PERMISSION_CHECK.to_owned()],
        ),
        (
            "scim",
            "provisions users and groups over SCIM",
            vec![PERMISSION_SCIM.to_owned()],
        ),
    ]
}

/// An API bearer token. Only a hash of the secret is stored, apart from this record;
/// the secret is shown once, when the token is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    pub id: Id,
    /// Unique (case-insensitively).
    pub name: String,
    /// The user the token acts for, if any.
    pub user: Option<Id>,
    /// The roles whose permissions the token may use.
    pub roles: Vec<String>,
    pub expires_at: Option<Time>,
    pub description: String,
    pub created_at: Time,
    pub updated_at: Time,
    pub created_by: String,
}

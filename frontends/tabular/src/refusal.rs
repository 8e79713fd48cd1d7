//! How the engine's refusals read in a file. [`Engine::validate`] returns each
//! problem of a write with the index of its operation and a typed
//! [`ValidationError`]; the plan knows which row made each operation. Here each
//! variant is given the column it points at in a sheet of one kind (by the variant
//! and its fields, never by its text) and the words the file's reader is told, where
//! a sheet has better ones than the engine's (a column instead of a field name).
//!
//! [`Engine::validate`]: portcullis_engine::Engine::validate

use portcullis_engine::{EntityKind, Id, ROOT_NODE_NAME, ValidationError};

use crate::columns::{Col, columns, key_col};
use crate::kind::Kind;
use crate::parse::fold;
use crate::plan::Change;

/// What is known of the operation a refusal belongs to.
pub(crate) struct Context<'a> {
    pub(crate) kind: Kind,
    /// The change of the row that made it: its name after the import, and for an
    /// update the columns it changes.
    pub(crate) change: Option<&'a Change>,
    /// The entity an update targets.
    pub(crate) target: Option<Id>,
    /// The id a creation asks for.
    pub(crate) requested: Option<Id>,
    /// References written with an id that matched nothing: (as the operation passes
    /// it, as the file wrote it).
    pub(crate) shown: &'a [(String, String)],
}

/// Whether `error` refuses the caller rather than the file: a grant beyond its
/// permissions, a token revoked since it was checked.
pub(crate) fn refuses_caller(error: &ValidationError) -> bool {
    matches!(
        error,
        ValidationError::GrantBeyondCaller { .. } | ValidationError::ActorRevoked(_)
    )
}

/// The column `error` points at, if the sheet has one to blame.
pub(crate) fn column(error: &ValidationError, context: &Context<'_>) -> Option<Col> {
    use ValidationError as E;
    let kind = context.kind;
    let col = match error {
        E::NotFound(missing) if names_target(missing, context) => None,
        E::NotFound(missing) => reference_col(kind, missing.kind),
        E::Duplicate { .. }
        | E::BuiltinRole(_)
        | E::RoleInUse { .. }
        | E::RootNode
        | E::NodeCycle { .. }
        | E::NodeNotEmpty(_) => Some(key_col(kind)),
        E::LookAlike { field, .. } | E::Invalid { field, .. } => field_col(kind, field),
        E::DuplicateEmail(_) => Some(Col::Email),
        // The username is another user's email, or the email another's username.
        E::AmbiguousLogin { other_field, .. } if *other_field == "email" => Some(Col::Username),
        E::AmbiguousLogin { .. } => Some(Col::Email),
        // An asset's accounts have ids of their own.
        E::DuplicateId { id, .. } | E::ReservedId { id, .. }
            if kind == Kind::Assets && context.requested != Some(*id) =>
        {
            Some(Col::Accounts)
        }
        E::DuplicateId { .. } | E::ReservedId { .. } => Some(Col::Id),
        E::GroupCycle { .. } => Some(Col::Subgroups),
        E::WeakPassword { .. }
        | E::GrantBeyondCaller { .. }
        | E::NotAMember { .. }
        | E::ActorRevoked(_)
        | E::VersionMismatch { .. }
        | E::Adoption(_) => None,
    };
    col.filter(|col| columns(kind).iter().any(|column| column.col == *col))
}

/// The message for `error` on its row.
pub(crate) fn message(error: &ValidationError, context: &Context<'_>) -> String {
    use ValidationError as E;
    match error {
        E::NotFound(missing) if names_target(missing, context) => error.to_string(),
        // A node's only reference is its parent.
        E::NotFound(missing) if context.kind == Kind::Nodes && missing.kind == EntityKind::Node => {
            let root = missing.reference.split('/').nth(1);
            if root.is_none_or(|root| fold(root) != fold(ROOT_NODE_NAME)) {
                let path = context
                    .change
                    .map_or(&missing.reference, |change| &change.name);
                format!("`{path}` does not start at the root `/{ROOT_NODE_NAME}`")
            } else {
                format!(
                    "the parent node `{}` does not exist; add a row for it",
                    missing.reference
                )
            }
        }
        E::NotFound(missing) => {
            let written = context
                .shown
                .iter()
                .find(|(passed, _)| *passed == missing.reference)
                .map_or(missing.reference.as_str(), |(_, written)| written.as_str());
            format!("unknown {} `{written}`", missing.kind.noun())
        }
        // The column says which field.
        E::Invalid { field, message } if field_col(context.kind, field).is_some() => {
            message.clone()
        }
        E::GroupCycle { parent, child } if fold(parent) == fold(child) => {
            "a group cannot contain itself".to_owned()
        }
        E::GroupCycle { parent, child } => format!(
            "the groups would nest in a cycle: `{child}` already contains `{parent}`, directly or through its subgroups"
        ),
        E::BuiltinRole(role) => match context.change {
            Some(change) if !change.columns.is_empty() => format!(
                "`{role}` is a built-in role and cannot be changed ({})",
                change.columns.join(", ")
            ),
            _ => format!("`{role}` is a built-in role and cannot be changed"),
        },
        E::RoleInUse { role, holder } => {
            format!("role `{role}` cannot be renamed while {holder} holds it")
        }
        E::RootNode => format!("the root node `/{ROOT_NODE_NAME}` cannot be changed"),
        _ => error.to_string(),
    }
}

/// Whether a missing entity is the one an update targets (deleted since the plan):
/// no column is to blame.
fn names_target(missing: &portcullis_engine::NotFound, context: &Context<'_>) -> bool {
    missing.kind == context.kind.entity_kind()
        && context
            .target
            .is_some_and(|id| missing.reference == id.to_string())
}

/// The column of a sheet of `kind` that refers to entities of kind `to`.
fn reference_col(kind: Kind, to: EntityKind) -> Option<Col> {
    let col = match (kind, to) {
        (Kind::Users, EntityKind::Role) => Col::SystemRoles,
        (Kind::Groups, EntityKind::User) => Col::Members,
        (Kind::Groups, EntityKind::Group) => Col::Subgroups,
        (Kind::Groups, EntityKind::Role) => Col::Roles,
        (Kind::Nodes, EntityKind::Node) => Col::Path,
        (Kind::Assets | Kind::Rules, EntityKind::Node) => Col::Nodes,
        (Kind::Rules, EntityKind::User) => Col::Users,
        (Kind::Rules, EntityKind::Group) => Col::Groups,
        (Kind::Rules, EntityKind::Asset) => Col::Assets,
        _ => return None,
    };
    Some(col)
}

/// The column of a sheet of `kind` that fills the spec field `field` (as
/// [`ValidationError::Invalid`] and [`ValidationError::LookAlike`] name it).
fn field_col(kind: Kind, field: &str) -> Option<Col> {
    let col = match (kind, field) {
        (_, "id") => Col::Id,
        (_, "description") => Col::Description,
        (Kind::Users, "username") => Col::Username,
        (Kind::Users, "name") => Col::FullName,
        (Kind::Users, "email") => Col::Email,
        (Kind::Users, "phone") => Col::Phone,
        (Kind::Users, "active") => Col::Active,
        (Kind::Users | Kind::Rules, "expires_at") => Col::ExpiresAt,
        (Kind::Users, "system_roles") => Col::SystemRoles,
        (Kind::Users, "mfa") => Col::Mfa,
        (Kind::Users | Kind::Groups, "external_id") => Col::ExternalId,
        (Kind::Nodes, "name" | "path") => Col::Path,
        (_, "name") => Col::Name,
        (Kind::Groups, "members") => Col::Members,
        (Kind::Groups, "subgroups") => Col::Subgroups,
        (Kind::Groups, "roles.scope" | "roles.roles") => Col::Roles,
        (Kind::Roles, "permissions") => Col::Permissions,
        (Kind::Assets, "address") => Col::Address,
        (Kind::Assets, "platform") => Col::Platform,
        (Kind::Assets, "protocols") => Col::Protocols,
        (Kind::Assets, "accounts") => Col::Accounts,
        (Kind::Assets | Kind::Rules, "nodes") => Col::Nodes,
        (Kind::Rules, "users") => Col::Users,
        (Kind::Rules, "groups") => Col::Groups,
        (Kind::Rules, "assets") => Col::Assets,
        (Kind::Rules, "accounts") => Col::AccountSelectors,
        (Kind::Rules, "starts_at") => Col::StartsAt,
        _ => return None,
    };
    Some(col)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every column a refusal may name is a column of its sheet.
    #[test]
    fn fields_and_references_map_to_columns_of_their_sheet() {
        let fields = [
            "id",
            "description",
            "username",
            "name",
            "email",
            "phone",
            "active",
            "expires_at",
            "system_roles",
            "mfa",
            "external_id",
            "path",
            "members",
            "subgroups",
            "roles.scope",
            "roles.roles",
            "permissions",
            "address",
            "platform",
            "protocols",
            "accounts",
            "nodes",
            "users",
            "groups",
            "assets",
            "starts_at",
        ];
        let to = [
            EntityKind::User,
            EntityKind::Group,
            EntityKind::Node,
            EntityKind::Asset,
            EntityKind::Role,
        ];
        for kind in Kind::ALL {
            let has = |col: Col| columns(kind).iter().any(|column| column.col == col);
            assert!(has(key_col(kind)), "{kind}");
            for field in fields {
                if let Some(col) = field_col(kind, field) {
                    assert!(has(col), "{kind}: {field} → {col:?}");
                }
            }
            for to in to {
                if let Some(col) = reference_col(kind, to) {
                    assert!(has(col), "{kind}: {to} → {col:?}");
                }
            }
        }
    }
}

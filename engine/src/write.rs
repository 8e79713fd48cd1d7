//! Writes: specs in, validated entities and snapshot updates out.

mod actor;
mod apply;
mod spec;
mod working;

pub use actor::Actor;
pub(crate) use actor::Authority;
pub use apply::{MAX_LIST_LEN, MAX_NAME_CHARS, MAX_TEXT_CHARS};
pub use spec::{
    AccountSpec, AssetSpec, GroupSpec, MemberSpec, NodeSpec, Op, Password, RoleSpec, RuleSpec,
    Spec, SpecEdit, SubgroupSpec, TokenSpec, UserSpec,
};
pub(crate) use working::{Finished, MembershipWrite, SecretWrite, Working, group_closure};

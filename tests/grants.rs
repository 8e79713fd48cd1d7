//! No caller grants what it does not hold, through any door (issue #21, defects 1 and
//! 2), and login names stay unambiguous (defect 3). The rules live in the engine; these
//! tests knock on every door that can grant — the admin API, import, SCIM and clone —
//! with tokens of random permissions asking for random grants.

use serde_json::{Value, json};

use crate::support::{Api, Rng, Server};

/// Every permission the engine knows of (`portcullis_engine::all_permissions`).
const PERMISSIONS: [&str; 34] = [
    "users.view",
    "users.add",
    "users.change",
    "users.delete",
    "groups.view",
    "groups.add",
    "groups.change",
    "groups.delete",
    "nodes.view",
    "nodes.add",
    "nodes.change",
    "nodes.delete",
    "assets.view",
    "assets.add",
    "assets.change",
    "assets.delete",
    "rules.view",
    "rules.add",
    "rules.change",
    "rules.delete",
    "roles.view",
    "roles.add",
    "roles.change",
    "roles.delete",
    "tokens.view",
    "tokens.add",
    "tokens.change",
    "tokens.delete",
    "changes.view",
    "changes.add",
    "changes.change",
    "changes.delete",
    "decisions.check",
    "scim.provision",
];

/// A way to hand out permissions.
#[derive(Debug, Clone, Copy)]
enum Door {
    ApiRoleCreate,
    ApiRolePatch,
    ApiToken,
    ApiUserSystemRoles,
    ApiGroupRoles,
    ApiGroupMember,
    ImportRoles,
    ImportUsers,
    ImportGroups,
    ScimGroupMember,
    CloneRole,
    CloneGroup,
}

const DOORS: [Door; 12] = [
    Door::ApiRoleCreate,
    Door::ApiRolePatch,
    Door::ApiToken,
    Door::ApiUserSystemRoles,
    Door::ApiGroupRoles,
    Door::ApiGroupMember,
    Door::ImportRoles,
    Door::ImportUsers,
    Door::ImportGroups,
    Door::ScimGroupMember,
    Door::CloneRole,
    Door::CloneGroup,
];

impl Door {
    /// What the route itself asks of the caller.
    fn needs(self) -> &'static [&'static str] {
        match self {
            Door::ApiRoleCreate => &["roles.add"],
            Door::ApiRolePatch => &["roles.change"],
            Door::ApiToken => &["tokens.add"],
            Door::ApiUserSystemRoles => &["users.change"],
            Door::ApiGroupRoles => &["groups.add"],
            Door::ApiGroupMember => &["groups.change"],
            Door::ImportRoles => &["roles.add", "roles.change"],
            Door::ImportUsers => &["users.add"],
            Door::ImportGroups => &["groups.add"],
            Door::ScimGroupMember => &["scim.provision"],
            Door::CloneRole => &["roles.add"],
            Door::CloneGroup => &["groups.add"],
        }
    }
}

fn assert_status(answer: &crate::support::Answer, status: u16, what: &str) {
    assert_eq!(answer.status, status, "{what}: {}", answer.text());
}

fn csv(api: &Api, kind: &str, update: bool, text: &str) -> crate::support::Answer {
    api.raw(
        "POST",
        &format!("/api/v1/{kind}/import?update={update}"),
        Some("text/csv"),
        Some(text.as_bytes().to_vec()),
    )
}

/// A token whose one role carries exactly `permissions`.
fn token_with(admin: &Api, name: &str, permissions: &[&str]) -> Api {
    admin.create(
        "/api/v1/roles",
        json!({"name": format!("{name}-role"), "permissions": permissions}),
    );
    let secret = admin.token(name, &[&format!("{name}-role")], None);
    admin.with_token(Some(&secret))
}

fn scim_patch_add_member(api: &Api, group_id: &str, user_id: &str) -> crate::support::Answer {
    api.send(
        "PATCH",
        &format!("/scim/v2/Groups/{group_id}"),
        Some(&json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": user_id}]}],
        })),
    )
}

/// Sets up what `door` needs, then lets `caller` try to grant `grant`'s permissions
/// (the role named `grant`, created by the admin, or the permissions themselves).
fn knock(
    admin: &Api,
    caller: &Api,
    door: Door,
    case: usize,
    requested: &[&str],
) -> crate::support::Answer {
    let grant = format!("grant-{case}");
    let assign_role = |admin: &Api| {
        admin.create(
            "/api/v1/roles",
            json!({"name": grant, "permissions": requested}),
        );
    };
    match door {
        Door::ApiRoleCreate => caller.post(
            "/api/v1/roles",
            &json!({"name": grant, "permissions": requested}),
        ),
        Door::ApiRolePatch => {
            admin.create("/api/v1/roles", json!({"name": grant, "permissions": []}));
            caller.send(
                "PATCH",
                &format!("/api/v1/roles/{grant}"),
                Some(&json!({"permissions": requested})),
            )
        }
        Door::ApiToken => {
            assign_role(admin);
            caller.post(
                "/api/v1/tokens",
                &json!({"name": format!("minted-{case}"), "roles": [grant]}),
            )
        }
        Door::ApiUserSystemRoles => {
            assign_role(admin);
            admin.create("/api/v1/users", json!({"username": format!("u-{case}")}));
            caller.send(
                "PATCH",
                &format!("/api/v1/users/u-{case}"),
                Some(&json!({"system_roles": ["user", grant]})),
            )
        }
        Door::ApiGroupRoles => {
            assign_role(admin);
            caller.post(
                "/api/v1/groups",
                &json!({"name": format!("g-{case}"), "roles": [{"scope": "*", "roles": [grant]}]}),
            )
        }
        Door::ApiGroupMember => {
            assign_role(admin);
            admin.create("/api/v1/users", json!({"username": format!("u-{case}")}));
            admin.create(
                "/api/v1/groups",
                json!({"name": format!("g-{case}"), "roles": [{"scope": "*", "roles": [grant]}]}),
            );
            caller.post(
                &format!("/api/v1/groups/g-{case}/members"),
                &json!(format!("u-{case}")),
            )
        }
        Door::ImportRoles => {
            admin.create("/api/v1/roles", json!({"name": grant, "permissions": []}));
            csv(
                caller,
                "roles",
                true,
                &format!("Name,Permissions\n{grant},\"{}\"\n", requested.join(", ")),
            )
        }
        Door::ImportUsers => {
            assign_role(admin);
            csv(
                caller,
                "users",
                false,
                &format!("Username,System roles\nu-{case},\"user, {grant}\"\n"),
            )
        }
        Door::ImportGroups => {
            assign_role(admin);
            csv(
                caller,
                "groups",
                false,
                &format!("Name,Roles\ng-{case},{grant} on *\n"),
            )
        }
        Door::ScimGroupMember => {
            assign_role(admin);
            let user = admin.post(
                "/scim/v2/Users",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": format!("u-{case}")}),
            );
            assert_status(&user, 201, "SCIM user");
            let group = admin.post(
                "/scim/v2/Groups",
                &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("g-{case}")}),
            );
            assert_status(&group, 201, "SCIM group");
            let roles = admin.send(
                "PATCH",
                &format!("/api/v1/groups/g-{case}"),
                Some(&json!({"roles": [{"scope": "*", "roles": [grant]}]})),
            );
            assert_status(&roles, 200, "role on the SCIM group");
            scim_patch_add_member(
                caller,
                group.json["id"].as_str().expect("a group id"),
                user.json["id"].as_str().expect("a user id"),
            )
        }
        Door::CloneRole => {
            assign_role(admin);
            caller.post(
                &format!("/api/v1/roles/{grant}/clone"),
                &json!({"name": format!("copy-{case}")}),
            )
        }
        Door::CloneGroup => {
            assign_role(admin);
            admin.create(
                "/api/v1/groups",
                json!({"name": format!("g-{case}"), "roles": [{"scope": "*", "roles": [grant]}]}),
            );
            caller.post(
                &format!("/api/v1/groups/g-{case}/clone"),
                &json!({"name": format!("copy-{case}")}),
            )
        }
    }
}

/// The generic property: for random (caller's permissions, requested grant) through
/// every door that grants, a grant beyond the caller's permissions is refused with
/// 403 and changes nothing, and one within them is taken.
#[test]
fn a_grant_beyond_the_callers_permissions_is_refused_at_every_door() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let mut rng = Rng::from_env("grants", 0x6a7e_5eed);
    let rounds = 4;
    let mut refused = vec![0usize; DOORS.len()];
    let mut granted = vec![0usize; DOORS.len()];
    for case in 0..DOORS.len() * rounds {
        let door_index = case % DOORS.len();
        let door = DOORS[door_index];
        // The caller: what the route needs, and about half of the rest.
        let mut held: Vec<&str> = door.needs().to_vec();
        let needs = door.needs();
        held.extend(
            PERMISSIONS
                .iter()
                .filter(|p| !needs.contains(p) && rng.below(2) == 0),
        );
        // The grant: every other case within the caller's permissions, else random;
        // at least one permission either way.
        let within = case / DOORS.len() % 2 == 0;
        let pool: Vec<&str> = if within {
            held.clone()
        } else {
            PERMISSIONS.to_vec()
        };
        let mut requested: Vec<&str> = pool.iter().copied().filter(|_| rng.below(3) == 0).collect();
        if requested.is_empty() {
            requested.push(*rng.pick(&pool));
        }
        let allowed = requested.iter().all(|p| held.contains(p));
        let caller = token_with(&admin, &format!("caller-{case}"), &held);
        let answer = knock(&admin, &caller, door, case, &requested);
        let what = format!("case {case}, {door:?}: holding {held:?}, granting {requested:?}");
        if allowed {
            assert!(
                (200..300).contains(&answer.status),
                "{what}: {} {}",
                answer.status,
                answer.text()
            );
            granted[door_index] += 1;
        } else {
            let before = admin.revision();
            assert_eq!(answer.status, 403, "{what}: {}", answer.text());
            assert_eq!(
                admin.revision(),
                before,
                "{what}: a refused grant changed the store"
            );
            refused[door_index] += 1;
        }
    }
    for (i, door) in DOORS.iter().enumerate() {
        assert!(
            refused[i] > 0 && granted[i] > 0,
            "{door:?} was refused {} and granted {} times: the cases must exercise both",
            refused[i],
            granted[i]
        );
    }
}

/// Defect 1: a token that manages roles made itself system-admin by importing its own
/// role with `tokens.add` (and a role holding everything could be imported anew).
#[test]
fn a_role_manager_cannot_import_itself_into_an_administrator() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let rolemgr = token_with(
        &admin,
        "rolemgr",
        &["roles.view", "roles.add", "roles.change"],
    );
    let patched = rolemgr.send(
        "PATCH",
        "/api/v1/roles/rolemgr-role",
        Some(&json!({"permissions": ["roles.view", "roles.add", "roles.change", "tokens.add"]})),
    );
    assert_status(&patched, 403, "PATCH of its own role");
    let before = admin.revision();
    let imported = csv(
        &rolemgr,
        "roles",
        true,
        "Name,Permissions\nrolemgr-role,\"roles.view, roles.add, roles.change, tokens.add\"\n",
    );
    assert_status(&imported, 403, "import of its own role");
    let everything = format!("Name,Permissions\nroot,\"{}\"\n", PERMISSIONS.join(", "));
    assert_status(
        &csv(&rolemgr, "roles", false, &everything),
        403,
        "a new all-powerful role",
    );
    assert_eq!(admin.revision(), before, "nothing was imported");
    let role = admin.get("/api/v1/roles/rolemgr-role");
    assert_eq!(
        role.json["permissions"],
        json!(["roles.add", "roles.change", "roles.view"]),
        "{}",
        role.text()
    );
    // And the token still cannot mint anything.
    assert_status(
        &rolemgr.post(
            "/api/v1/tokens",
            &json!({"name": "root", "roles": ["system-admin"]}),
        ),
        403,
        "minting a token",
    );
}

/// Defect 2: `users.change` / `groups.change` without system-admin could hand out
/// system-admin to a user, a group, or a member of an administrators' group.
#[test]
fn a_user_or_group_editor_cannot_hand_out_system_admin() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    admin.create("/api/v1/users", json!({"username": "alice"}));
    admin.create(
        "/api/v1/groups",
        json!({"name": "admins", "roles": [{"scope": "*", "roles": ["system-admin"]}]}),
    );
    admin.create("/api/v1/groups", json!({"name": "plain"}));
    let editor = token_with(
        &admin,
        "editor",
        &[
            "users.view",
            "users.change",
            "groups.view",
            "groups.add",
            "groups.change",
        ],
    );
    let before = admin.revision();
    let refusals = [
        editor.send(
            "PATCH",
            "/api/v1/users/alice",
            Some(&json!({"system_roles": ["system-admin"]})),
        ),
        editor.send(
            "PATCH",
            "/api/v1/groups/plain",
            Some(&json!({"roles": [{"scope": "*", "roles": ["system-admin"]}]})),
        ),
        editor.post("/api/v1/groups/admins/members", &json!("alice")),
        editor.send(
            "PATCH",
            "/api/v1/groups/admins",
            Some(&json!({"members": ["alice"]})),
        ),
        // Nesting `plain` inside `admins` gives plain's members system-admin.
        editor.send(
            "PATCH",
            "/api/v1/groups/admins",
            Some(&json!({"subgroups": ["plain"]})),
        ),
    ];
    for (i, answer) in refusals.iter().enumerate() {
        assert_status(answer, 403, &format!("refusal {i}"));
        assert_eq!(
            answer.json["error"]["code"],
            "forbidden",
            "{}",
            answer.text()
        );
    }
    assert_eq!(
        admin.revision(),
        before,
        "a refused grant changed the store"
    );
    // What grants nothing stays allowed: renaming, removing, describing.
    let described = editor.send(
        "PATCH",
        "/api/v1/groups/admins",
        Some(&json!({"description": "the administrators"})),
    );
    assert_status(&described, 200, "a description");
    let member = editor.post("/api/v1/groups/plain/members", &json!("alice"));
    assert_status(&member, 200, "a member of a group without roles");
}

fn scim_user(api: &Api, username: &str, email: Option<&str>) -> crate::support::Answer {
    let mut body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": username,
        "password": "Correct horse battery staple 42",
    });
    if let Some(email) = email {
        body["emails"] = json!([{"value": email, "primary": true}]);
    }
    api.post("/scim/v2/Users", &body)
}

/// The sign-in status: `ok`, `denied`, …
fn login(api: &Api, login: &str, password: &str) -> String {
    let answer = api.post(
        "/api/v1/auth/login",
        &json!({"login": login, "password": password}),
    );
    assert_status(&answer, 200, "sign-in");
    answer.json["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Defect 3: a user named like another user's email took over sign-in by that email.
#[test]
fn a_username_equal_to_another_users_email_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let password = "Alice's long passphrase 1";
    admin.create(
        "/api/v1/users",
        json!({"username": "alice", "email": "Alice@Example.com", "password": password}),
    );
    admin.create("/api/v1/users", json!({"username": "bob@corp.example"}));
    let anonymous = admin.with_token(None);
    assert_eq!(login(&anonymous, "alice@example.com", password), "ok");
    let before = admin.revision();
    let attempts: [(&str, crate::support::Answer); 4] = [
        (
            "API username = email",
            admin.post(
                "/api/v1/users",
                &json!({"username": "ALICE@example.com", "password": "Mallory's passphrase 1"}),
            ),
        ),
        (
            "API email = username",
            admin.post(
                "/api/v1/users",
                &json!({"username": "carol", "email": "BOB@corp.example"}),
            ),
        ),
        (
            "API rename onto an email",
            admin.send(
                "PATCH",
                "/api/v1/users/bob@corp.example",
                Some(&json!({"username": "alice@example.com"})),
            ),
        ),
        (
            "SCIM username = email",
            scim_user(&admin, "alice@example.COM", None),
        ),
    ];
    for (what, answer) in &attempts {
        assert_eq!(answer.status, 409, "{what}: {}", answer.text());
    }
    assert_eq!(attempts[0].1.json["error"]["code"], "ambiguous_login");
    assert_eq!(admin.revision(), before, "a refused user changed the store");
    assert_eq!(
        login(&anonymous, "alice@example.com", password),
        "ok",
        "alice still signs in with her email"
    );
    // A user's own username may be their own email.
    let own = admin.post(
        "/api/v1/users",
        &json!({"username": "dave@example.com", "email": "dave@example.com"}),
    );
    assert_status(&own, 201, "own email as username");
}

/// The engine re-reads the acting token when the write applies: a grant made by a
/// token that lost its permission in the meantime does not go through.
#[test]
fn a_grant_is_judged_by_the_token_as_it_is_when_the_write_applies() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(dir.path(), &[]);
    let admin = server.admin();
    let caller = token_with(&admin, "shrinking", &["roles.add", "users.view"]);
    admin.create(
        "/api/v1/roles",
        json!({"name": "viewer", "permissions": ["users.view"]}),
    );
    assert_status(
        &caller.post(
            "/api/v1/roles",
            &json!({"name": "v2", "permissions": ["users.view"]}),
        ),
        201,
        "within its permissions",
    );
    let shrunk = admin.send(
        "PATCH",
        "/api/v1/roles/shrinking-role",
        Some(&json!({"permissions": ["roles.add"]})),
    );
    assert_status(&shrunk, 200, "shrink");
    let answer: Value = caller
        .post(
            "/api/v1/roles",
            &json!({"name": "v3", "permissions": ["users.view"]}),
        )
        .json;
    assert_eq!(answer["error"]["code"], "forbidden", "{answer}");
}

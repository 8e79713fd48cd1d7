//! The schemas of the resources served (RFC 7643 §4, §8.7) and the discovery
//! documents built from them (`/Schemas`, `/ResourceTypes`, `/ServiceProviderConfig`).
//!
//! Every attribute RFC 7643 defines for users and groups is listed, so that paths and
//! filters naming any of them are understood. Attributes are `stored` (kept, returned
//! and advertised in `/Schemas`) unless marked `not_stored`: a member's `display`,
//! which is accepted in requests and dropped. A user's `groups` is read-only: computed
//! from the engine's memberships, never written. Discovery must never advertise an
//! attribute that does not round-trip.

use serde_json::{Value, json};

use crate::ScimSettings;

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const ENTERPRISE_USER_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub(crate) const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub(crate) const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub(crate) const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";
pub(crate) const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const SERVICE_PROVIDER_CONFIG: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Boolean,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::Boolean => "boolean",
            Kind::Integer => "integer",
            Kind::DateTime => "dateTime",
            Kind::Binary => "binary",
            Kind::Reference => "reference",
            Kind::Complex => "complex",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mutability {
    ReadOnly,
    ReadWrite,
    Immutable,
    WriteOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returned {
    Always,
    Never,
    Default,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Uniqueness {
    None,
    Server,
}

/// One attribute's characteristics (RFC 7643 §7).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attribute {
    pub name: &'static str,
    pub kind: Kind,
    pub multi: bool,
    pub required: bool,
    pub case_exact: bool,
    pub mutability: Mutability,
    pub returned: Returned,
    pub uniqueness: Uniqueness,
    pub canonical: &'static [&'static str],
    pub reference_types: &'static [&'static str],
    pub sub: &'static [Attribute],
    /// Kept by the engine, returned, and advertised.
    pub stored: bool,
    pub description: &'static str,
}

const fn attribute(name: &'static str, kind: Kind, description: &'static str) -> Attribute {
    Attribute {
        name,
        kind,
        multi: false,
        required: false,
        case_exact: false,
        mutability: Mutability::ReadWrite,
        returned: Returned::Default,
        uniqueness: Uniqueness::None,
        canonical: &[],
        reference_types: &[],
        sub: &[],
        stored: true,
        description,
    }
}

const fn string(name: &'static str, description: &'static str) -> Attribute {
    attribute(name, Kind::String, description)
}

const fn complex(
    name: &'static str,
    sub: &'static [Attribute],
    description: &'static str,
) -> Attribute {
    Attribute {
        sub,
        ..attribute(name, Kind::Complex, description)
    }
}

impl Attribute {
    const fn multi(self) -> Attribute {
        Attribute {
            multi: true,
            ..self
        }
    }
    const fn required(self) -> Attribute {
        Attribute {
            required: true,
            ..self
        }
    }
    const fn case_exact(self) -> Attribute {
        Attribute {
            case_exact: true,
            ..self
        }
    }
    const fn read_only(self) -> Attribute {
        Attribute {
            mutability: Mutability::ReadOnly,
            ..self
        }
    }
    const fn immutable(self) -> Attribute {
        Attribute {
            mutability: Mutability::Immutable,
            ..self
        }
    }
    const fn write_only(self) -> Attribute {
        Attribute {
            mutability: Mutability::WriteOnly,
            returned: Returned::Never,
            ..self
        }
    }
    const fn always(self) -> Attribute {
        Attribute {
            returned: Returned::Always,
            ..self
        }
    }
    const fn unique(self) -> Attribute {
        Attribute {
            uniqueness: Uniqueness::Server,
            ..self
        }
    }
    const fn canonical(self, canonical: &'static [&'static str]) -> Attribute {
        Attribute { canonical, ..self }
    }
    const fn references(self, reference_types: &'static [&'static str]) -> Attribute {
        Attribute {
            reference_types,
            ..self
        }
    }
    /// Understood in requests, never kept nor returned nor advertised.
    const fn not_stored(self) -> Attribute {
        Attribute {
            stored: false,
            ..self
        }
    }

    const fn stored(self) -> Attribute {
        Attribute {
            stored: true,
            ..self
        }
    }

    /// The sub-attribute called `name` (case-insensitively).
    pub(crate) fn sub_attribute(&self, name: &str) -> Option<&'static Attribute> {
        find(self.sub, name)
    }

    /// The characteristics, as `/Schemas` shows them. Only stored sub-attributes.
    fn to_json(self) -> Value {
        let mut json = json!({
            "name": self.name,
            "type": self.kind.name(),
            "multiValued": self.multi,
            "description": self.description,
            "required": self.required,
            "caseExact": self.case_exact,
            "mutability": match self.mutability {
                Mutability::ReadOnly => "readOnly",
                Mutability::ReadWrite => "readWrite",
                Mutability::Immutable => "immutable",
                Mutability::WriteOnly => "writeOnly",
            },
            "returned": match self.returned {
                Returned::Always => "always",
                Returned::Never => "never",
                Returned::Default => "default",
            },
            "uniqueness": match self.uniqueness {
                Uniqueness::None => "none",
                Uniqueness::Server => "server",
            },
        });
        if !self.canonical.is_empty() {
            json["canonicalValues"] = json!(self.canonical);
        }
        if self.kind == Kind::Reference {
            json["referenceTypes"] = json!(self.reference_types);
        }
        if self.kind == Kind::Complex {
            json["subAttributes"] = self
                .sub
                .iter()
                .filter(|a| a.stored)
                .map(|attribute| attribute.to_json())
                .collect();
        }
        json
    }
}

fn find(attributes: &'static [Attribute], name: &str) -> Option<&'static Attribute> {
    attributes
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A schema: its URN and attributes.
#[derive(Debug)]
pub(crate) struct Schema {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attributes: &'static [Attribute],
}

impl Schema {
    pub(crate) fn attribute(&self, name: &str) -> Option<&'static Attribute> {
        find(self.attributes, name)
    }

    fn to_json(&self, base: &str) -> Value {
        json!({
            "schemas": [SCHEMA],
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "attributes": self
                .attributes
                .iter()
                .filter(|a| a.stored)
                .map(|attribute| attribute.to_json())
                .collect::<Vec<_>>(),
            "meta": {
                "resourceType": "Schema",
                "location": format!("{base}/Schemas/{}", self.id),
            },
        })
    }
}

/// `type`, `primary`, `display`, `value`: the sub-attributes most multi-valued
/// attributes share. `value` and `type` are stored for emails and phone numbers.
macro_rules! multi_valued_sub {
    ($value:expr, $types:expr) => {
        &[
            $value,
            string(
                "display",
                "A human-readable name, primarily used for display purposes.",
            )
            .read_only(),
            string("type", "A label indicating the attribute's function.").canonical($types),
            attribute(
                "primary",
                Kind::Boolean,
                "Whether this is the primary value of the attribute.",
            ),
        ]
    };
}

const EMAIL_SUB: &[Attribute] = &[
    string("value", "The email address.").stored(),
    string("display", "A human-readable name, primarily used for display purposes.").read_only(),
    string(
        "type",
        "A label indicating the attribute's function. The engine keeps one address, returned as `work`.",
    )
    .canonical(&["work"])
    .stored(),
    attribute(
        "primary",
        Kind::Boolean,
        "Whether this is the primary address; the primary one is the one kept.",
    ),
];

const PHONE_SUB: &[Attribute] = &[
    string("value", "The phone number.").stored(),
    string("display", "A human-readable name, primarily used for display purposes.").read_only(),
    string(
        "type",
        "A label indicating the attribute's function. The engine keeps one number, returned as `work`.",
    )
    .canonical(&["work"])
    .stored(),
    attribute(
        "primary",
        Kind::Boolean,
        "Whether this is the primary number; the primary one is the one kept.",
    ),
];

const NAME_SUB: &[Attribute] = &[
    string("formatted", "The full name."),
    string("familyName", "The family name."),
    string("givenName", "The given name."),
    string("middleName", "The middle name."),
    string("honorificPrefix", "The honorific prefix."),
    string("honorificSuffix", "The honorific suffix."),
];

const ADDRESS_SUB: &[Attribute] = &[
    string("formatted", "The full mailing address."),
    string("streetAddress", "The street address."),
    string("locality", "The city or locality."),
    string("region", "The state or region."),
    string("postalCode", "The postal code."),
    string("country", "The country."),
    string("type", "A label indicating the attribute's function.")
        .canonical(&["work", "home", "other"]),
    attribute(
        "primary",
        Kind::Boolean,
        "Whether this is the primary address.",
    ),
];

const GROUPS_SUB: &[Attribute] = &[
    string("value", "The id of the group.").read_only(),
    attribute("$ref", Kind::Reference, "The URI of the group.")
        .references(&["User", "Group"])
        .read_only(),
    string("display", "The name of the group.").read_only(),
    string("type", "`direct` or `indirect` membership.")
        .canonical(&["direct", "indirect"])
        .read_only(),
];

const USER_ATTRIBUTES: &[Attribute] = &[
    string("userName", "The unique login name of the user.")
        .required()
        .unique()
        .stored(),
    complex(
        "name",
        NAME_SUB,
        "The components of the user's name; without `displayName`, the engine's name is built from it.",
    ),
    string(
        "displayName",
        "The name of the user, suitable for display (the engine's `name`).",
    )
    .stored(),
    string("nickName", "The casual way to address the user."),
    attribute(
        "profileUrl",
        Kind::Reference,
        "A URI of the user's profile.",
    )
    .references(&["external"]),
    string("title", "The user's title."),
    string(
        "userType",
        "The relationship between the organization and the user.",
    ),
    string("preferredLanguage", "The user's preferred language."),
    string("locale", "The user's default location."),
    string("timezone", "The user's time zone."),
    // Required because the engine always holds a value; a request without it means
    // `true`, and a PATCH cannot remove it.
    attribute(
        "active",
        Kind::Boolean,
        "Whether the user may be granted anything. Defaults to true.",
    )
    .required()
    .stored(),
    string(
        "password",
        "The user's password: hashed with argon2id, never returned.",
    )
    .write_only()
    .stored(),
    complex(
        "emails",
        EMAIL_SUB,
        "Email addresses; the engine keeps one.",
    )
    .multi()
    .stored(),
    complex(
        "phoneNumbers",
        PHONE_SUB,
        "Phone numbers; the engine keeps one.",
    )
    .multi()
    .stored(),
    complex(
        "ims",
        multi_valued_sub!(string("value", "The instant messaging address."), &[]),
        "Instant messaging addresses.",
    )
    .multi(),
    complex(
        "photos",
        multi_valued_sub!(
            attribute("value", Kind::Reference, "The URL of a photo.").references(&["external"]),
            &["photo", "thumbnail"]
        ),
        "URLs of photos of the user.",
    )
    .multi(),
    complex("addresses", ADDRESS_SUB, "Physical mailing addresses.").multi(),
    complex(
        "groups",
        GROUPS_SUB,
        "The SCIM groups the user belongs to, directly or through nested groups.",
    )
    .multi()
    .read_only(),
    complex(
        "entitlements",
        multi_valued_sub!(string("value", "The entitlement."), &[]),
        "Entitlements.",
    )
    .multi(),
    complex(
        "roles",
        multi_valued_sub!(string("value", "The role."), &[]),
        "Roles.",
    )
    .multi(),
    complex(
        "x509Certificates",
        multi_valued_sub!(
            attribute("value", Kind::Binary, "The certificate.").case_exact(),
            &[]
        ),
        "Certificates.",
    )
    .multi(),
];

const MEMBER_SUB: &[Attribute] = &[
    string("value", "The id of the member.")
        .case_exact()
        .immutable()
        .stored(),
    attribute("$ref", Kind::Reference, "The URI of the member.")
        .references(&["User", "Group"])
        .case_exact()
        .immutable()
        .stored(),
    string("type", "The kind of member: a user, or a nested group.")
        .canonical(&["User", "Group"])
        .immutable()
        .stored(),
    string("display", "The name of the member.")
        .read_only()
        .not_stored(),
];

const GROUP_ATTRIBUTES: &[Attribute] = &[
    string("displayName", "The unique name of the group.")
        .required()
        .unique()
        .stored(),
    complex(
        "members",
        MEMBER_SUB,
        "The members: users, and groups nested in this one.",
    )
    .multi()
    .stored(),
];

const MANAGER_SUB: &[Attribute] = &[
    string("value", "The id of the manager."),
    attribute("$ref", Kind::Reference, "The URI of the manager.").references(&["User"]),
    string("displayName", "The name of the manager.").read_only(),
];

const ENTERPRISE_ATTRIBUTES: &[Attribute] = &[
    string("employeeNumber", "The employee number."),
    string("costCenter", "The cost center."),
    string("organization", "The organization."),
    string("division", "The division."),
    string("department", "The department."),
    complex("manager", MANAGER_SUB, "The user's manager."),
];

const META_SUB: &[Attribute] = &[
    string("resourceType", "The resource type.")
        .case_exact()
        .read_only(),
    attribute("created", Kind::DateTime, "When the resource was created.").read_only(),
    attribute(
        "lastModified",
        Kind::DateTime,
        "When the resource was last changed.",
    )
    .read_only(),
    attribute("location", Kind::Reference, "The URI of the resource.")
        .references(&["uri"])
        .case_exact()
        .read_only(),
    string("version", "The entity tag of the resource.")
        .case_exact()
        .read_only(),
];

/// The attributes every resource has (RFC 7643 §3.1), not listed in its schema.
pub(crate) const COMMON_ATTRIBUTES: &[Attribute] = &[
    string("id", "The service provider's identifier of the resource.")
        .case_exact()
        .read_only()
        .always()
        .unique()
        .stored(),
    string(
        "externalId",
        "The provisioning client's identifier of the resource.",
    )
    .case_exact()
    .stored(),
    complex("meta", META_SUB, "Resource metadata.")
        .read_only()
        .stored(),
];

const fn read_only(name: &'static str, kind: Kind, description: &'static str) -> Attribute {
    attribute(name, kind, description).read_only().stored()
}

const SUPPORTED: &[Attribute] = &[read_only(
    "supported",
    Kind::Boolean,
    "Whether the operation is supported.",
)
.required()];

const BULK_SUB: &[Attribute] = &[
    read_only("supported", Kind::Boolean, "Whether bulk is supported.").required(),
    read_only(
        "maxOperations",
        Kind::Integer,
        "The most operations in one request.",
    )
    .required(),
    read_only(
        "maxPayloadSize",
        Kind::Integer,
        "The largest request, in bytes.",
    )
    .required(),
];

const FILTER_SUB: &[Attribute] = &[
    read_only(
        "supported",
        Kind::Boolean,
        "Whether filtering is supported.",
    )
    .required(),
    read_only(
        "maxResults",
        Kind::Integer,
        "The most resources one response holds.",
    )
    .required(),
];

const AUTHENTICATION_SUB: &[Attribute] = &[
    read_only("type", Kind::String, "The authentication scheme.")
        .required()
        .canonical(&[
            "oauth",
            "oauth2",
            "oauthbearertoken",
            "httpbasic",
            "httpdigest",
        ]),
    read_only("name", Kind::String, "The common name of the scheme.").required(),
    read_only("description", Kind::String, "A description of the scheme.").required(),
    read_only("specUri", Kind::Reference, "The scheme's specification.").references(&["external"]),
    read_only(
        "documentationUri",
        Kind::Reference,
        "The scheme's documentation.",
    )
    .references(&["external"]),
    read_only(
        "primary",
        Kind::Boolean,
        "Whether this is the preferred scheme.",
    ),
];

const SERVICE_PROVIDER_CONFIG_ATTRIBUTES: &[Attribute] = &[
    read_only(
        "documentationUri",
        Kind::Reference,
        "Help for the service provider.",
    )
    .references(&["external"]),
    Attribute {
        sub: SUPPORTED,
        ..read_only("patch", Kind::Complex, "PATCH configuration.").required()
    },
    Attribute {
        sub: BULK_SUB,
        ..read_only("bulk", Kind::Complex, "Bulk configuration.").required()
    },
    Attribute {
        sub: FILTER_SUB,
        ..read_only("filter", Kind::Complex, "Filter configuration.").required()
    },
    Attribute {
        sub: SUPPORTED,
        ..read_only(
            "changePassword",
            Kind::Complex,
            "Password change configuration.",
        )
        .required()
    },
    Attribute {
        sub: SUPPORTED,
        ..read_only("sort", Kind::Complex, "Sort configuration.").required()
    },
    Attribute {
        sub: SUPPORTED,
        ..read_only("etag", Kind::Complex, "ETag configuration.").required()
    },
    Attribute {
        sub: AUTHENTICATION_SUB,
        ..read_only(
            "authenticationSchemes",
            Kind::Complex,
            "Supported authentication schemes.",
        )
        .multi()
        .required()
    },
];

const SCHEMA_EXTENSION_SUB: &[Attribute] = &[
    read_only("schema", Kind::Reference, "The URI of an extension schema.")
        .references(&["uri"])
        .case_exact()
        .required(),
    read_only(
        "required",
        Kind::Boolean,
        "Whether resources must include the extension.",
    )
    .required(),
];

const RESOURCE_TYPE_ATTRIBUTES: &[Attribute] = &[
    read_only("id", Kind::String, "The resource type's identifier."),
    read_only("name", Kind::String, "The resource type's name.").required(),
    read_only(
        "description",
        Kind::String,
        "The resource type's description.",
    ),
    read_only("endpoint", Kind::Reference, "The resource type's endpoint.")
        .references(&["uri"])
        .required(),
    read_only(
        "schema",
        Kind::Reference,
        "The resource type's primary schema.",
    )
    .references(&["uri"])
    .case_exact()
    .required(),
    Attribute {
        sub: SCHEMA_EXTENSION_SUB,
        ..read_only(
            "schemaExtensions",
            Kind::Complex,
            "The resource type's extensions.",
        )
        .multi()
    },
];

/// The characteristics an attribute definition has (RFC 7643 §7) but
/// `subAttributes`.
const CHARACTERISTICS: [Attribute; 11] = [
    read_only("name", Kind::String, "The attribute's name.")
        .case_exact()
        .required(),
    read_only("type", Kind::String, "The attribute's data type.")
        .required()
        .canonical(&[
            "string",
            "complex",
            "boolean",
            "decimal",
            "integer",
            "dateTime",
            "reference",
            "binary",
        ]),
    read_only(
        "multiValued",
        Kind::Boolean,
        "Whether the attribute is multi-valued.",
    )
    .required(),
    read_only("description", Kind::String, "The attribute's description."),
    read_only(
        "required",
        Kind::Boolean,
        "Whether the attribute is required.",
    )
    .required(),
    read_only("canonicalValues", Kind::String, "Suggested values.").multi(),
    read_only(
        "caseExact",
        Kind::Boolean,
        "Whether comparisons are case-sensitive.",
    ),
    read_only(
        "mutability",
        Kind::String,
        "Whether and how the attribute can be changed.",
    )
    .canonical(&["readOnly", "readWrite", "immutable", "writeOnly"]),
    read_only("returned", Kind::String, "When the attribute is returned.")
        .canonical(&["always", "never", "default", "request"]),
    read_only(
        "uniqueness",
        Kind::String,
        "How unique the attribute's values are.",
    )
    .canonical(&["none", "server", "global"]),
    read_only(
        "referenceTypes",
        Kind::String,
        "What a reference may refer to.",
    )
    .multi(),
];

/// The attributes of a sub-attribute's definition: it has no `subAttributes`.
const ATTRIBUTE_SUB_LEAF: &[Attribute] = &CHARACTERISTICS;

/// The attributes of an attribute's definition: the characteristics, then its
/// `subAttributes`.
const ATTRIBUTE_SUB: &[Attribute] = &{
    let mut all = [SUB_ATTRIBUTES; CHARACTERISTICS.len() + 1];
    let mut i = 0;
    while i < CHARACTERISTICS.len() {
        all[i] = CHARACTERISTICS[i];
        i += 1;
    }
    all
};

const SUB_ATTRIBUTES: Attribute = Attribute {
    sub: ATTRIBUTE_SUB_LEAF,
    ..read_only(
        "subAttributes",
        Kind::Complex,
        "The sub-attributes of a complex attribute.",
    )
    .multi()
};

const SCHEMA_ATTRIBUTES: &[Attribute] = &[
    read_only("id", Kind::String, "The schema's URI.").required(),
    read_only("name", Kind::String, "The schema's name."),
    read_only("description", Kind::String, "The schema's description."),
    Attribute {
        sub: ATTRIBUTE_SUB,
        ..read_only("attributes", Kind::Complex, "The schema's attributes.")
            .multi()
            .required()
    },
];

static SERVICE_PROVIDER_CONFIG_SCHEMA: Schema = Schema {
    id: SERVICE_PROVIDER_CONFIG,
    name: "ServiceProviderConfig",
    description: "Service Provider Configuration",
    attributes: SERVICE_PROVIDER_CONFIG_ATTRIBUTES,
};

static RESOURCE_TYPE_SCHEMA: Schema = Schema {
    id: RESOURCE_TYPE,
    name: "ResourceType",
    description: "Resource Type",
    attributes: RESOURCE_TYPE_ATTRIBUTES,
};

static SCHEMA_SCHEMA: Schema = Schema {
    id: SCHEMA,
    name: "Schema",
    description: "Schema",
    attributes: SCHEMA_ATTRIBUTES,
};

pub(crate) static USER: Schema = Schema {
    id: USER_SCHEMA,
    name: "User",
    description: "User Account",
    attributes: USER_ATTRIBUTES,
};

pub(crate) static GROUP: Schema = Schema {
    id: GROUP_SCHEMA,
    name: "Group",
    description: "Group",
    attributes: GROUP_ATTRIBUTES,
};

pub(crate) static ENTERPRISE_USER: Schema = Schema {
    id: ENTERPRISE_USER_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User (accepted, not kept)",
    attributes: ENTERPRISE_ATTRIBUTES,
};

/// The two kinds of resource served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ResourceKind {
    User,
    Group,
}

impl ResourceKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            ResourceKind::User => "User",
            ResourceKind::Group => "Group",
        }
    }

    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            ResourceKind::User => "Users",
            ResourceKind::Group => "Groups",
        }
    }

    pub(crate) fn schema(self) -> &'static Schema {
        match self {
            ResourceKind::User => &USER,
            ResourceKind::Group => &GROUP,
        }
    }

    /// Extensions understood, kept and advertised.
    pub(crate) fn extensions(self) -> &'static [&'static Schema] {
        static USER_EXTENSIONS: [&Schema; 1] = [&ENTERPRISE_USER];
        match self {
            ResourceKind::User => &USER_EXTENSIONS,
            ResourceKind::Group => &[],
        }
    }

    pub(crate) fn engine_kind(self) -> portcullis_engine::EntityKind {
        match self {
            ResourceKind::User => portcullis_engine::EntityKind::User,
            ResourceKind::Group => portcullis_engine::EntityKind::Group,
        }
    }

    /// What `uri` + `name` designates in this resource type.
    pub(crate) fn locate(self, uri: Option<&str>, name: &str) -> Located {
        let core = |name: &str| {
            find(COMMON_ATTRIBUTES, name)
                .or_else(|| self.schema().attribute(name))
                .map(|attribute| Located::Attribute {
                    extension: None,
                    attribute,
                })
                .unwrap_or(Located::Unknown)
        };
        let Some(uri) = uri else {
            return core(name);
        };
        if uri.eq_ignore_ascii_case(self.schema().id) {
            return core(name);
        }
        for extension in self.extensions() {
            if uri.eq_ignore_ascii_case(extension.id) {
                return extension
                    .attribute(name)
                    .map(|attribute| Located::Attribute {
                        extension: Some(extension),
                        attribute,
                    })
                    .unwrap_or(Located::Unknown);
            }
            let whole = extension.id.len() == uri.len() + 1 + name.len()
                && extension.id[..uri.len()].eq_ignore_ascii_case(uri)
                && extension.id[uri.len() + 1..].eq_ignore_ascii_case(name);
            if whole {
                return Located::Extension(extension);
            }
        }
        Located::Unknown
    }

    /// The extension whose URN is `key`, if `key` names one.
    pub(crate) fn extension(self, key: &str) -> Option<&'static Schema> {
        self.extensions()
            .iter()
            .copied()
            .find(|e| e.id.eq_ignore_ascii_case(key))
    }
}

/// What an attribute path designates.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Located {
    Attribute {
        /// The extension holding the attribute; `None` for the core schema.
        extension: Option<&'static Schema>,
        attribute: &'static Attribute,
    },
    /// A whole extension (`urn:…:enterprise:2.0:User` as a path).
    Extension(&'static Schema),
    Unknown,
}

/// `GET /Schemas`: the schemas, with only what is stored.
pub(crate) fn schemas(base: &str) -> Vec<Value> {
    [
        &USER,
        &ENTERPRISE_USER,
        &GROUP,
        &SERVICE_PROVIDER_CONFIG_SCHEMA,
        &RESOURCE_TYPE_SCHEMA,
        &SCHEMA_SCHEMA,
    ]
    .into_iter()
    .map(|schema| schema.to_json(base))
    .collect()
}

/// `GET /ResourceTypes`.
pub(crate) fn resource_types(base: &str) -> Vec<Value> {
    [ResourceKind::User, ResourceKind::Group]
        .into_iter()
        .map(|kind| {
            json!({
                "schemas": [RESOURCE_TYPE],
                "id": kind.name(),
                "name": kind.name(),
                "description": match kind {
                    ResourceKind::User => "Users: Portcullis users with source `scim`",
                    ResourceKind::Group => "Groups: Portcullis groups with source `scim`; members are users and nested groups",
                },
                "endpoint": format!("/{}", kind.endpoint()),
                "schema": kind.schema().id,
                "schemaExtensions": kind
                    .extensions()
                    .iter()
                    .map(|extension| json!({"schema": extension.id, "required": false}))
                    .collect::<Vec<_>>(),
                "meta": {
                    "resourceType": "ResourceType",
                    "location": format!("{base}/ResourceTypes/{}", kind.name()),
                },
            })
        })
        .collect()
}

/// `GET /ServiceProviderConfig`.
pub(crate) fn service_provider_config(base: &str, settings: &ScimSettings) -> Value {
    json!({
        "schemas": [SERVICE_PROVIDER_CONFIG],
        "documentationUri": "https://github.com/portcullis/portcullis/blob/main/frontends/scim/README.md",
        "patch": {"supported": true},
        "bulk": {
            "supported": true,
            "maxOperations": settings.max_operations,
            "maxPayloadSize": settings.max_payload_size,
        },
        "filter": {"supported": true, "maxResults": settings.max_results},
        "changePassword": {"supported": true},
        "sort": {"supported": true},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A Portcullis API token whose roles carry the `scim.provision` permission (the built-in `scim` role)",
            "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base}/ServiceProviderConfig"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_located_case_insensitively() {
        let user = ResourceKind::User;
        assert!(matches!(
            user.locate(None, "USERNAME"),
            Located::Attribute { attribute, extension: None } if attribute.name == "userName"
        ));
        assert!(matches!(
            user.locate(Some("urn:ietf:params:scim:schemas:core:2.0:user"), "emails"),
            Located::Attribute { attribute, .. } if attribute.name == "emails"
        ));
        assert!(matches!(
            user.locate(Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"), "department"),
            Located::Attribute { extension: Some(_), attribute } if attribute.name == "department"
        ));
        assert!(matches!(
            user.locate(
                Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0"),
                "User"
            ),
            Located::Extension(_)
        ));
        assert!(matches!(user.locate(None, "bogus"), Located::Unknown));
        assert!(matches!(
            ResourceKind::Group.locate(None, "userName"),
            Located::Unknown
        ));
    }

    #[test]
    fn discovery_lists_only_stored_attributes() {
        let user = USER.to_json("http://x/scim/v2");
        let names: Vec<&str> = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        // What is kept round-trips and is advertised; so is the read-only `groups`.
        for kept in [
            "groups",
            "userName",
            "name",
            "title",
            "addresses",
            "emails",
            "x509Certificates",
        ] {
            assert!(names.contains(&kept), "{kept} in {names:?}");
        }
        let emails = user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "emails")
            .unwrap();
        let subs: Vec<&str> = emails["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect();
        assert!(
            subs.contains(&"value") && subs.contains(&"primary"),
            "{subs:?}"
        );
    }
}

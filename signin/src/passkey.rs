//! Passkeys (WebAuthn level 2): the relying party, through webauthn-rs. Every check of
//! an attestation or an assertion (the challenge, the origin, the relying-party id, the
//! signature, user verification, the sign count) is the crate's; this module only
//! turns its types into bytes for the sign-in tables and JSON for the caller, so that
//! no webauthn-rs type is part of the engine's API.
//!
//! Passkeys are registered and used with user verification required (a PIN or a
//! biometric on the authenticator), as webauthn-rs's passkey ceremonies do.

use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Uuid, Webauthn, WebauthnBuilder,
};

use super::settings::PasskeySettings;
use super::tables::PasskeyRecord;
use portcullis_engine::User;

/// Why a passkey ceremony step was refused, for the caller to word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CeremonyError {
    /// The client's JSON is not a credential of the expected shape.
    Malformed(String),
    /// webauthn-rs refused it (wrong origin, challenge, signature, counter, …).
    Refused(String),
}

/// The relying party, built once from the config.
pub(crate) struct RelyingParty {
    webauthn: Webauthn,
    /// A stored passkey's JSON with no real credential behind it: what an
    /// authentication for a name that names nobody is started with (see
    /// [`RelyingParty::decoy`]).
    decoy_template: Value,
    /// Keys the decoy credential ids, so that one name always gets the same one.
    decoy_key: [u8; 32],
}

impl RelyingParty {
    pub(crate) fn new(settings: &PasskeySettings) -> Result<RelyingParty, String> {
        let origins = settings
            .origins
            .iter()
            .map(|origin| {
                Url::parse(origin).map_err(|error| format!("passkeys origin `{origin}`: {error}"))
            })
            .collect::<Result<Vec<Url>, String>>()?;
        let Some(first) = origins.first() else {
            return Err("passkeys: `origins` needs at least one origin".to_owned());
        };
        let mut builder = WebauthnBuilder::new(&settings.rp_id, first)
            .map_err(|error| format!("passkeys rp_id `{}`: {error}", settings.rp_id))?
            .rp_name(&settings.rp_name);
        for origin in &origins[1..] {
            builder = builder.append_allowed_origin(origin);
        }
        let webauthn = builder
            .build()
            .map_err(|error| format!("passkeys: {error}"))?;
        Ok(RelyingParty {
            webauthn,
            decoy_template: decoy_template(),
            decoy_key: super::mfa::random_bytes::<32>(),
        })
    }

    /// A registration challenge for `user` (their passkeys excluded) and the state to
    /// keep until the answer.
    pub(crate) fn start_registration(
        &self,
        user: &User,
        existing: &[PasskeyRecord],
    ) -> Result<(Value, Vec<u8>), CeremonyError> {
        let exclude = existing
            .iter()
            .map(|key| key.credential_id.clone().into())
            .collect::<Vec<_>>();
        let display = if user.name.is_empty() {
            &user.username
        } else {
            &user.name
        };
        let (challenge, state) = self
            .webauthn
            .start_passkey_registration(
                Uuid::from_bytes(*user.id.as_bytes()),
                &user.username,
                display,
                Some(exclude),
            )
            .map_err(|error| CeremonyError::Refused(error.to_string()))?;
        Ok((to_value(&challenge), to_bytes(&state)))
    }

    /// The new passkey's credential id and stored form, when `credential` answers the
    /// registration `state` was kept for.
    pub(crate) fn finish_registration(
        &self,
        state: &[u8],
        credential: &Value,
    ) -> Result<(Vec<u8>, Vec<u8>), CeremonyError> {
        let state: PasskeyRegistration = from_bytes(state)?;
        let credential: RegisterPublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|error| CeremonyError::Malformed(error.to_string()))?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&credential, &state)
            .map_err(|error| CeremonyError::Refused(error.to_string()))?;
        Ok((passkey.cred_id().to_vec(), to_bytes(&passkey)))
    }

    /// An authentication challenge for `keys` and the state to keep until the answer.
    pub(crate) fn start_authentication(
        &self,
        keys: &[PasskeyRecord],
    ) -> Result<(Value, Vec<u8>), CeremonyError> {
        let passkeys = keys
            .iter()
            .map(|key| from_bytes::<Passkey>(&key.passkey))
            .collect::<Result<Vec<_>, _>>()?;
        let (challenge, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|error| CeremonyError::Refused(error.to_string()))?;
        Ok((to_value(&challenge), to_bytes(&state)))
    }

    /// A challenge that looks like one for a user with one passkey, for a login name
    /// that names nobody (or nobody with a passkey): its credential id is derived from
    /// the name, so asking twice gives the same one, as for a real user. No answer can
    /// pass it.
    pub(crate) fn decoy(&self, login: &str) -> Result<(Value, Vec<u8>), CeremonyError> {
        let mut hasher = Sha256::new();
        hasher.update(self.decoy_key);
        hasher.update(login.to_lowercase().as_bytes());
        let id: [u8; 32] = hasher.finalize().into();
        let mut template = self.decoy_template.clone();
        template["cred"]["cred_id"] = Value::String(base64url(&id));
        let record = PasskeyRecord {
            id: portcullis_engine::Id::NIL,
            name: String::new(),
            created_at: portcullis_engine::Time::from_micros(0),
            last_used_at: None,
            credential_id: id.to_vec(),
            passkey: serde_json::to_vec(&template).expect("INVARIANT: JSON serializes"),
        };
        self.start_authentication(std::slice::from_ref(&record))
    }

    /// The credential id that answered, and the passkey updated with the answer's sign
    /// count, when `credential` passes the authentication `state` was kept for.
    /// `stored` finds the stored form of a credential id (the state holds the keys as
    /// they were at the start).
    pub(crate) fn finish_authentication(
        &self,
        state: &[u8],
        credential: &Value,
        stored: impl FnOnce(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), CeremonyError> {
        let state: PasskeyAuthentication = from_bytes(state)?;
        let credential: PublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|error| CeremonyError::Malformed(error.to_string()))?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&credential, &state)
            .map_err(|error| CeremonyError::Refused(error.to_string()))?;
        let id = result.cred_id().to_vec();
        let updated = stored(&id)
            .map(|bytes| from_bytes::<Passkey>(&bytes))
            .transpose()?
            .map(|mut passkey| {
                passkey.update_credential(&result);
                to_bytes(&passkey)
            });
        Ok((id, updated))
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("INVARIANT: webauthn-rs values serialize")
}

fn to_bytes<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("INVARIANT: webauthn-rs values serialize")
}

fn from_bytes<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CeremonyError> {
    serde_json::from_slice(bytes).map_err(|error| CeremonyError::Malformed(error.to_string()))
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The stored form of a P-256 passkey, with a public key that matches no private key
/// anyone holds (the point of webauthn-rs's own test vector).
fn decoy_template() -> Value {
    serde_json::json!({"cred": {
        "cred_id": "",
        "cred": {"type_": "ES256", "key": {"EC_EC2": {"curve": "SECP256R1",
            "x": [194,126,127,109,252,23,131,21,252,6,223,99,44,254,140,27,230,17,94,5,133,28,104,41,144,69,171,149,161,26,200,243],
            "y": [143,123,183,156,24,178,21,248,117,159,162,69,171,52,188,252,26,59,6,47,103,92,19,58,117,103,249,0,219,8,95,196]}}},
        "counter": 0,
        "transports": null,
        "user_verified": true,
        "backup_eligible": false,
        "backup_state": false,
        "registration_policy": "required",
        "extensions": {"cred_protect": "NotRequested", "hmac_create_secret": "NotRequested"},
        "attestation": {"data": "None", "metadata": "None"},
        "attestation_format": "None",
    }})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn party() -> RelyingParty {
        RelyingParty::new(&PasskeySettings {
            rp_id: "example.com".to_owned(),
            rp_name: "Portcullis".to_owned(),
            origins: vec!["https://portcullis.example.com".to_owned()],
        })
        .unwrap()
    }

    #[test]
    fn a_decoy_challenge_is_stable_per_name_and_names_one_credential() {
        let party = party();
        let (first, _) = party.decoy("nobody").unwrap();
        let (again, _) = party.decoy("NOBODY").unwrap();
        let (other, _) = party.decoy("someone-else").unwrap();
        let ids = |challenge: &Value| challenge["publicKey"]["allowCredentials"].clone();
        assert_eq!(ids(&first).as_array().map(Vec::len), Some(1), "{first}");
        assert_eq!(ids(&first), ids(&again));
        assert_ne!(ids(&first), ids(&other));
        assert_ne!(
            first["publicKey"]["challenge"],
            again["publicKey"]["challenge"]
        );
    }

    #[test]
    fn base64url_without_padding() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn origins_and_the_rp_id_are_checked_when_built() {
        let bad = |rp_id: &str, origins: &[&str]| {
            RelyingParty::new(&PasskeySettings {
                rp_id: rp_id.to_owned(),
                rp_name: "P".to_owned(),
                origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            })
            .is_err()
        };
        assert!(bad("example.com", &[]));
        assert!(bad("example.com", &["not a url"]));
        assert!(bad("example.com", &["https://example.org"]));
        assert!(!bad(
            "example.com",
            &["https://a.example.com", "https://example.com"]
        ));
    }
}

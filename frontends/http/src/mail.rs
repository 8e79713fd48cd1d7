//! Mail: reset links and one-time codes, sent over SMTP with `lettre` to the
//! configured server. The connection is secured with STARTTLS unless the settings say
//! otherwise (implicit TLS, or plain SMTP for a trusted local relay): the message
//! bodies hold a secret, so they never cross the wire in clear unless the operator
//! asked for it, and they are never logged.

use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, CertificateStore, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};
use portcullis_signin::Delivery;

/// How the connection to the mail server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MailTls {
    /// Plain SMTP, then `STARTTLS`, required: a server that does not offer it, or
    /// whose certificate does not verify, gets no message (port 587 by default).
    #[default]
    StartTls,
    /// TLS from the first byte, "SMTPS" (port 465 by default).
    Implicit,
    /// Plain SMTP, never encrypted: only for a relay on this host or a trusted
    /// network, and only when the config says so (port 25 by default).
    None,
}

impl MailTls {
    /// The port a server of this kind usually listens on.
    pub fn default_port(self) -> u16 {
        match self {
            MailTls::StartTls => 587,
            MailTls::Implicit => 465,
            MailTls::None => 25,
        }
    }
}

impl FromStr for MailTls {
    type Err = String;

    fn from_str(text: &str) -> Result<MailTls, String> {
        match text {
            "starttls" => Ok(MailTls::StartTls),
            "implicit" => Ok(MailTls::Implicit),
            "none" => Ok(MailTls::None),
            other => Err(format!(
                "mail tls `{other}`: expected `starttls` (the default), `implicit` or `none`"
            )),
        }
    }
}

/// Where and how to send mail.
#[derive(Clone, PartialEq, Eq)]
pub struct MailSettings {
    pub host: String,
    pub port: u16,
    /// The `From:` address, such as `Portcullis <portcullis@example.com>`.
    pub from: String,
    /// SMTP AUTH user name and password, if the server wants them.
    pub username: Option<String>,
    pub password: Option<String>,
    /// How long one SMTP conversation may take.
    pub timeout: Duration,
    pub tls: MailTls,
    /// PEM certificates to trust for the server's certificate instead of the
    /// system's roots (a private CA).
    pub ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
            .field("tls", &self.tls)
            .field("ca_pem", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Sends mail; cheap to clone.
#[derive(Clone)]
pub(crate) struct Mailer {
    transport: SmtpTransport,
    from: Mailbox,
}

impl Mailer {
    pub(crate) fn new(settings: &MailSettings) -> Result<Mailer, String> {
        let from = settings
            .from
            .parse()
            .map_err(|error| format!("mail `from` `{}`: {error}", settings.from))?;
        let mut builder = SmtpTransport::builder_dangerous(settings.host.clone())
            .port(settings.port)
            .timeout(Some(settings.timeout))
            .tls(tls(settings)?);
        if let (Some(user), Some(password)) = (&settings.username, &settings.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `body` to the delivery's address. Blocking: call it off the async
    /// workers. The error names no secret.
    pub(crate) fn send(
        &self,
        delivery: &Delivery,
        subject: &str,
        body: String,
    ) -> Result<(), String> {
        let to: Mailbox = delivery
            .to
            .parse()
            .map_err(|error| format!("address `{}`: {error}", delivery.to))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body)
            .map_err(|error| format!("cannot build the message: {error}"))?;
        self.transport
            .send(&message)
            .map(|_| ())
            .map_err(|error| format!("smtp: {error}"))
    }
}

/// lettre's TLS mode for `settings`: the server's name checked against the system's
/// roots, or against the configured CA alone.
fn tls(settings: &MailSettings) -> Result<Tls, String> {
    if settings.tls == MailTls::None {
        return Ok(Tls::None);
    }
    let mut parameters = TlsParameters::builder(settings.host.clone());
    if let Some(pem) = &settings.ca_pem {
        let ca = Certificate::from_pem(pem)
            .map_err(|error| format!("mail ca_file: not a PEM certificate: {error}"))?;
        parameters = parameters
            .certificate_store(CertificateStore::None)
            .add_root_certificate(ca);
    }
    let parameters = parameters
        .build_rustls()
        .map_err(|error| format!("mail TLS for `{}`: {error}", settings.host))?;
    Ok(match settings.tls {
        MailTls::Implicit => Tls::Wrapper(parameters),
        _ => Tls::Required(parameters),
    })
}

//! Mail: reset links and one-time codes, sent over SMTP with `lettre` to the
//! configured server. Plain SMTP only (a local relay, or a server on a trusted
//! network); the message bodies hold a secret, so they are never logged.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{Message, SmtpTransport, Transport};
use portcullis_engine::Delivery;

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
}

impl std::fmt::Debug for MailSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("from", &self.from)
            .field("username", &self.username)
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
            .timeout(Some(settings.timeout));
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

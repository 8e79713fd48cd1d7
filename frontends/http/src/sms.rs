//! SMS: one-time sign-in codes, handed to a pluggable sender. Two senders: a webhook
//! (an HTTPS `POST` of `{"to", "text"}` with a bearer secret, to an SMS gateway or a
//! relay of the operator's) and a command (a program of the operator's, given the
//! number on the first line of its stdin and the text on the second).
//!
//! The text holds the code: it is never logged, and neither is the webhook's secret;
//! an error names what failed (a status, a timeout, an exit code), never the message.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// Where SMS go.
#[derive(Clone, PartialEq, Eq)]
pub enum SmsSender {
    /// `POST url` with JSON `{"to": "+15551234567", "text": "..."}` and, when set,
    /// `Authorization: Bearer <bearer>`; any 2xx answer means sent.
    Webhook { url: String, bearer: Option<String> },
    /// Runs `program args…` with `<number>\n<text>\n` on stdin; exit status 0 means
    /// sent.
    Command { program: PathBuf, args: Vec<String> },
}

/// The `[sms]` settings: the sender, how long one try may take, and how many times a
/// failed try is repeated.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsSettings {
    pub sender: SmsSender,
    pub timeout: Duration,
    pub retries: u32,
}

/// `Debug` hides the bearer secret.
impl std::fmt::Debug for SmsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SmsSender::Webhook { url, bearer } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("bearer", &bearer.as_ref().map(|_| "<secret>"))
                .finish(),
            SmsSender::Command { program, args } => f
                .debug_struct("Command")
                .field("program", program)
                .field("args", args)
                .finish(),
        }
    }
}

impl std::fmt::Debug for SmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsSettings")
            .field("sender", &self.sender)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

/// Sends SMS; cheap to clone.
#[derive(Clone)]
pub(crate) struct Sms {
    settings: SmsSettings,
    client: reqwest::Client,
}

impl Sms {
    pub(crate) fn new(settings: &SmsSettings) -> Result<Sms, String> {
        if let SmsSender::Webhook { url, .. } = &settings.sender {
            let parsed =
                reqwest::Url::parse(url).map_err(|error| format!("sms url `{url}`: {error}"))?;
            if !matches!(parsed.scheme(), "https" | "http") {
                return Err(format!("sms url `{url}`: expected https:// (or http://)"));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| format!("sms webhook client: {error}"))?;
        Ok(Sms {
            settings: settings.clone(),
            client,
        })
    }

    /// The kind of sender, for the event log.
    pub(crate) fn kind(&self) -> &'static str {
        match self.settings.sender {
            SmsSender::Webhook { .. } => "webhook",
            SmsSender::Command { .. } => "command",
        }
    }

    /// Sends `text` to `to`, trying again up to `retries` times after a failure (a
    /// short pause between tries). The error is the last try's, without the text.
    pub(crate) async fn send(&self, to: &str, text: &str) -> Result<(), String> {
        let mut last = String::new();
        for attempt in 0..=self.settings.retries {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
            let tried = match &self.settings.sender {
                SmsSender::Webhook { url, bearer } => {
                    self.post(url, bearer.as_deref(), to, text).await
                }
                SmsSender::Command { program, args } => self.run(program, args, to, text).await,
            };
            match tried {
                Ok(()) => return Ok(()),
                Err(error) => last = error,
            }
        }
        Err(last)
    }

    async fn post(
        &self,
        url: &str,
        bearer: Option<&str>,
        to: &str,
        text: &str,
    ) -> Result<(), String> {
        let mut request = self
            .client
            .post(url)
            .json(&serde_json::json!({"to": to, "text": text}));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        // The error's text has no URL (a secret may sit in its query) and no body.
        let response = request
            .send()
            .await
            .map_err(|error| format!("webhook: {}", error.without_url()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("webhook answered {}", status.as_u16()))
        }
    }

    async fn run(
        &self,
        program: &PathBuf,
        args: &[String],
        to: &str,
        text: &str,
    ) -> Result<(), String> {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| format!("command `{}`: {error}", program.display()))?;
        let input = format!("{to}\n{text}\n");
        let finished = tokio::time::timeout(self.settings.timeout, async {
            if let Some(mut stdin) = child.stdin.take() {
                // A program that exits without reading its input is judged by its
                // exit status alone.
                let _ = stdin.write_all(input.as_bytes()).await;
            }
            child.wait().await
        })
        .await;
        match finished {
            Err(_) => Err(format!(
                "command `{}` took longer than {:?}",
                program.display(),
                self.settings.timeout
            )),
            Ok(Err(error)) => Err(format!("command `{}`: {error}", program.display())),
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(format!(
                "command `{}` exited with {status}",
                program.display()
            )),
        }
    }
}

//! Mail: an outbox in the store and two transports. `log` (the default) writes each message to
//! `<data>/outbox/<id>.eml` (owner-only) and logs that it did, without the body; `smtp` delivers
//! through an SMTP server (STARTTLS, implicit TLS, or plain for a local relay). Bodies hold
//! temporary passwords and reset links, so the outbox keeps them sealed and drops them once sent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_model::Clock;
use portcullis_store::{MailRecord, Store};
use tokio::sync::{Notify, watch};

use crate::random::random_bytes;
use crate::{AuthnError, SecretBox};

const SEAL_PURPOSE: &str = "mail";
/// Delivery attempts before a message is left alone (it stays in the outbox with its error).
const MAX_ATTEMPTS: i64 = 8;

/// How an SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain connection upgraded with STARTTLS (required).
    Starttls,
    /// TLS from the first byte (usually port 465).
    Tls,
    /// No encryption: only for a relay on the same host or network.
    None,
}

/// SMTP settings.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// Server host name.
    pub host: String,
    /// Port (587 for STARTTLS, 465 for TLS, 25 for a plain relay).
    pub port: u16,
    /// Connection security.
    #[serde(default = "default_security")]
    pub security: SmtpSecurity,
    /// User name, when the server wants a login.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for that login.
    #[serde(default)]
    pub password: Option<String>,
}

fn default_security() -> SmtpSecurity {
    SmtpSecurity::Starttls
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

/// Where mail goes.
#[derive(Debug, Clone)]
pub enum MailTransport {
    /// Into files under this directory, and a line in the log.
    Log(PathBuf),
    /// Through an SMTP server.
    Smtp(SmtpSettings),
}

enum Sender {
    Log(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Queues and delivers mail.
pub struct Mailer {
    store: Store,
    secret_box: SecretBox,
    sender: Sender,
    from: Mailbox,
    clock: Clock,
    wake: Notify,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish_non_exhaustive()
    }
}

impl Mailer {
    /// A mailer sending from `from` through `transport`.
    pub fn new(
        store: Store,
        secret_box: SecretBox,
        transport: MailTransport,
        from: &str,
        clock: Clock,
    ) -> Result<Arc<Self>, AuthnError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| AuthnError::Mail(format!("sender address '{from}': {e}")))?;
        let sender = match transport {
            MailTransport::Log(dir) => Sender::Log(dir),
            MailTransport::Smtp(s) => {
                let builder = match s.security {
                    SmtpSecurity::Starttls => {
                        AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&s.host)
                    }
                    SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&s.host),
                    SmtpSecurity::None => Ok(
                        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&s.host),
                    ),
                }
                .map_err(|e| AuthnError::Mail(format!("SMTP server '{}': {e}", s.host)))?;
                let mut builder = builder.port(s.port).timeout(Some(Duration::from_secs(20)));
                if let (Some(user), Some(password)) = (s.username, s.password) {
                    builder = builder.credentials(Credentials::new(user, password));
                }
                Sender::Smtp(builder.build())
            }
        };
        Ok(Arc::new(Self {
            store,
            secret_box,
            sender,
            from,
            clock,
            wake: Notify::new(),
        }))
    }

    /// Puts a message into the outbox and wakes the sender.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), AuthnError> {
        let _: Mailbox = to
            .parse()
            .map_err(|e| AuthnError::Mail(format!("recipient '{to}': {e}")))?;
        let id: String = random_bytes::<12>()?
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let sealed = self.secret_box.seal(SEAL_PURPOSE, body.as_bytes())?;
        self.store
            .enqueue_mail(&id, to, subject, &sealed, self.clock.now_millis())
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers queued mail until `stop` turns true: at once when woken, and every 30 seconds
    /// for retries.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            self.deliver_pending().await;
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(30)) => {}
            }
        }
    }

    /// Tries every queued message once.
    pub async fn deliver_pending(&self) {
        let pending = match self.store.pending_mail(50, MAX_ATTEMPTS).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the mail outbox");
                return;
            }
        };
        for mail in pending {
            match self.deliver(&mail).await {
                Ok(()) => {
                    if let Err(e) = self
                        .store
                        .mail_sent(&mail.id, self.clock.now_millis())
                        .await
                    {
                        tracing::warn!(error = %e, id = %mail.id, "mail sent but not marked as sent");
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, id = %mail.id, to = %mail.recipient, attempt = mail.attempts + 1, "mail delivery failed");
                    let _ = self.store.mail_failed(&mail.id, &e.to_string()).await;
                }
            }
        }
    }

    async fn deliver(&self, mail: &MailRecord) -> Result<(), AuthnError> {
        let body = String::from_utf8(self.secret_box.open(SEAL_PURPOSE, &mail.body_sealed)?)
            .map_err(|_| AuthnError::Mail("a queued body is not text".into()))?;
        let to: Mailbox = mail
            .recipient
            .parse()
            .map_err(|e| AuthnError::Mail(format!("recipient '{}': {e}", mail.recipient)))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.as_str())
            .body(body)
            .map_err(|e| AuthnError::Mail(e.to_string()))?;
        match &self.sender {
            Sender::Log(dir) => {
                let path = dir.join(format!("{}.eml", mail.id));
                crate::secret_box::write_private(&path, &message.formatted())
                    .or_else(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })
                    .map_err(|e| {
                        AuthnError::Mail(format!("cannot write {}: {e}", path.display()))
                    })?;
                tracing::info!(to = %mail.recipient, subject = %mail.subject, file = %path.display(), "mail written to the outbox directory (log transport)");
            }
            Sender::Smtp(transport) => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| AuthnError::Mail(e.to_string()))?;
                tracing::info!(to = %mail.recipient, subject = %mail.subject, "mail sent");
            }
        }
        Ok(())
    }
}

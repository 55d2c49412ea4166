//! The one bus interface — publish, subscribe, queue-subscribe, request/reply, as NATS
//! names them — over two transports: in-process channels and NATS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::inproc::{InProc, Unsubscribe};

/// A message as delivered: its subject, payload, and where to reply (request/reply only).
#[derive(Debug, Clone)]
pub struct Message {
    /// The subject it was published on.
    pub subject: Arc<str>,
    /// The encoded message.
    pub payload: Bytes,
    /// The requester's inbox, for [`Bus::respond`].
    pub reply: Option<String>,
}

/// How to reach NATS beyond the URL (which may itself carry `user:password@` or
/// `token@`).
#[derive(Debug, Clone, Default)]
pub struct NatsOptions {
    /// A `.creds` file (JWT and NKey seed), as `nats` tools take.
    pub creds: Option<PathBuf>,
    /// A PEM file of root certificates to trust for `tls://` (else the system's).
    pub ca: Option<PathBuf>,
    /// The connection name the server shows.
    pub name: Option<String>,
}

/// A bus handle: cheap to clone; every stage of a process shares one.
#[derive(Clone)]
pub struct Bus {
    transport: Transport,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_nats() {
            "Bus(nats)"
        } else {
            "Bus(inproc)"
        })
    }
}

#[derive(Clone)]
enum Transport {
    InProc(InProc),
    Nats(async_nats::Client),
}

/// What a subscriber reads, in publish order per publisher.
pub struct Subscription {
    inner: SubInner,
}

enum SubInner {
    InProc(mpsc::Receiver<Message>, #[allow(dead_code)] Unsubscribe),
    Nats(async_nats::Subscriber),
}

impl Subscription {
    /// The next message; `None` once the bus is gone.
    pub async fn next(&mut self) -> Option<Message> {
        match &mut self.inner {
            SubInner::InProc(rx, _) => rx.recv().await,
            SubInner::Nats(sub) => sub.next().await.map(|m| Message {
                subject: Arc::from(m.subject.as_str()),
                payload: m.payload,
                reply: m.reply.map(|r| r.to_string()),
            }),
        }
    }
}

/// The URL with any credentials cut out, for messages and logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}***{}", &url[..scheme + 3], &url[at..]),
        _ => url.to_owned(),
    }
}

impl Bus {
    /// The in-process bus.
    pub fn in_process() -> Bus {
        Bus {
            transport: Transport::InProc(InProc::default()),
        }
    }

    /// A bus from its URL: `inproc` (or empty), `nats://[user:pass@|token@]host:port`,
    /// or `tls://…` (NATS over TLS).
    pub async fn connect(url: &str, options: &NatsOptions) -> Result<Bus> {
        if url.is_empty() || url == "inproc" {
            return Ok(Bus::in_process());
        }
        let shown = redact(url);
        let tls = if url.starts_with("tls://") {
            true
        } else if url.starts_with("nats://") {
            false
        } else {
            return Err(Error::BadUrl {
                url: shown,
                reason: "use inproc, nats://HOST:PORT or tls://HOST:PORT".into(),
            });
        };
        let mut opts = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .subscription_capacity(65_536)
            .reconnect_delay_callback(|attempts| Duration::from_millis((attempts as u64 * 100).min(1000)))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected; reconnecting"),
                    other => tracing::debug!("NATS event: {other}"),
                }
            });
        if let Some(name) = &options.name {
            opts = opts.name(name);
        }
        if tls {
            opts = opts.require_tls(true);
        }
        if let Some(ca) = &options.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some(creds) = &options.creds {
            opts = opts.credentials_file(creds).await.map_err(|e| Error::Connect {
                url: shown.clone(),
                reason: format!("cannot read credentials file {}: {e}", creds.display()),
            })?;
        }
        let rest = &url[url.find("://").map_or(0, |i| i + 3)..];
        let (userinfo, host) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        if let Some(info) = userinfo {
            opts = match info.split_once(':') {
                Some((user, pass)) => opts.user_and_password(percent_decode(user), percent_decode(pass)),
                None => opts.token(percent_decode(info)),
            };
        }
        let addr = format!("nats://{host}");
        let client = opts.connect(addr).await.map_err(|e| Error::Connect {
            url: shown,
            reason: e.to_string(),
        })?;
        Ok(Bus {
            transport: Transport::Nats(client),
        })
    }

    /// Whether the bus can carry messages now (NATS: connected; in-process: always).
    pub fn connected(&self) -> bool {
        match &self.transport {
            Transport::InProc(_) => true,
            Transport::Nats(client) => client.connection_state() == async_nats::connection::State::Connected,
        }
    }

    /// The NATS client, on the NATS transport.
    pub(crate) fn nats_client(&self) -> Option<&async_nats::Client> {
        match &self.transport {
            Transport::Nats(client) => Some(client),
            Transport::InProc(_) => None,
        }
    }

    /// Whether this is the NATS transport.
    pub fn is_nats(&self) -> bool {
        matches!(self.transport, Transport::Nats(_))
    }

    /// Sends a message to every subscriber of `subject` (and one member of each queue
    /// group). Nobody listening is not an error: the message is gone, as in NATS.
    pub async fn publish(&self, subject: &str, payload: Bytes) -> Result<()> {
        match &self.transport {
            Transport::InProc(bus) => {
                bus.publish(subject, payload, None).await;
                Ok(())
            }
            Transport::Nats(client) => client
                .publish(subject.to_owned(), payload)
                .await
                .map_err(|e| transport_error("publish", subject, e)),
        }
    }

    /// Every message on `subject`.
    pub async fn subscribe(&self, subject: &str) -> Result<Subscription> {
        self.subscribe_in(subject, None).await
    }

    /// A share of the messages on `subject`: each goes to one member of `group`.
    pub async fn queue_subscribe(&self, subject: &str, group: &str) -> Result<Subscription> {
        self.subscribe_in(subject, Some(group)).await
    }

    async fn subscribe_in(&self, subject: &str, group: Option<&str>) -> Result<Subscription> {
        let inner = match &self.transport {
            Transport::InProc(bus) => {
                let (rx, guard) = bus.subscribe(subject, group);
                SubInner::InProc(rx, guard)
            }
            Transport::Nats(client) => {
                let sub = match group {
                    None => client.subscribe(subject.to_owned()).await,
                    Some(g) => client.queue_subscribe(subject.to_owned(), g.to_owned()).await,
                };
                SubInner::Nats(sub.map_err(|e| transport_error("subscribe", subject, e))?)
            }
        };
        Ok(Subscription { inner })
    }

    /// Sends `payload` to one listener of `subject` and waits up to `timeout` for its
    /// reply. Nobody listening is [`Error::NoResponders`], at once.
    pub async fn request(&self, subject: &str, payload: Bytes, timeout: Duration) -> Result<Message> {
        let timed_out = || Error::Timeout {
            subject: subject.to_owned(),
            millis: timeout.as_millis() as u64,
        };
        match &self.transport {
            Transport::InProc(bus) => {
                let inbox = bus.inbox();
                let (mut rx, _guard) = bus.subscribe(&inbox, None);
                if bus.publish(subject, payload, Some(inbox)).await == 0 {
                    return Err(Error::NoResponders {
                        subject: subject.to_owned(),
                    });
                }
                tokio::time::timeout(timeout, rx.recv())
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(timed_out)
            }
            Transport::Nats(client) => {
                let request = async_nats::Request::new().payload(payload).timeout(Some(timeout));
                match client.send_request(subject.to_owned(), request).await {
                    Ok(m) => Ok(Message {
                        subject: Arc::from(m.subject.as_str()),
                        payload: m.payload,
                        reply: None,
                    }),
                    Err(e) => Err(match e.kind() {
                        async_nats::RequestErrorKind::NoResponders => Error::NoResponders {
                            subject: subject.to_owned(),
                        },
                        async_nats::RequestErrorKind::TimedOut => timed_out(),
                        _ => transport_error("request", subject, e),
                    }),
                }
            }
        }
    }

    /// Replies to a request message (does nothing for a message without a reply subject).
    pub async fn respond(&self, to: &Message, payload: Bytes) -> Result<()> {
        match &to.reply {
            Some(reply) => self.publish(reply, payload).await,
            None => Ok(()),
        }
    }

    /// Waits until everything published so far has left this process.
    pub async fn flush(&self) -> Result<()> {
        match &self.transport {
            Transport::InProc(_) => Ok(()),
            Transport::Nats(client) => client.flush().await.map_err(|e| transport_error("flush", "", e)),
        }
    }
}

/// Decodes `%XX` escapes (URL userinfo); anything malformed is kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn transport_error(verb: &'static str, subject: &str, e: impl std::fmt::Display) -> Error {
    Error::Transport {
        verb,
        subject: subject.to_owned(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::message::{Envelope, Header, Step};

    #[tokio::test]
    async fn in_process_bus_has_the_nats_verbs() {
        let bus = Bus::in_process();
        let mut a = bus.subscribe("s").await.unwrap();
        let mut b = bus.subscribe("s").await.unwrap();
        let mut q1 = bus.queue_subscribe("s", "g").await.unwrap();
        let mut q2 = bus.queue_subscribe("s", "g").await.unwrap();
        for i in 0..4u8 {
            bus.publish("s", Bytes::from(vec![i])).await.unwrap();
        }
        for sub in [&mut a, &mut b] {
            for i in 0..4u8 {
                assert_eq!(sub.next().await.unwrap().payload[..], [i]);
            }
        }
        // The group shares the four: two each, in turn.
        let (x, y) = (q1.next().await.unwrap(), q2.next().await.unwrap());
        assert_ne!(x.payload, y.payload);
        let (x2, y2) = (q1.next().await.unwrap(), q2.next().await.unwrap());
        assert_ne!(x2.payload, y2.payload);
        // Request/reply, and nobody listening.
        let bus2 = bus.clone();
        let mut server = bus.subscribe("svc").await.unwrap();
        tokio::spawn(async move {
            let m = server.next().await.unwrap();
            bus2.respond(&m, Bytes::from_static(b"pong")).await.unwrap();
        });
        let reply = bus
            .request("svc", Bytes::from_static(b"ping"), Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&reply.payload[..], b"pong");
        let none = bus.request("nobody", Bytes::new(), Duration::from_secs(1)).await;
        assert!(matches!(none, Err(Error::NoResponders { .. })));
        // A dropped subscription is forgotten.
        drop(a);
        drop(b);
        drop(q1);
        drop(q2);
        assert!(matches!(
            bus.request("s", Bytes::new(), Duration::from_millis(10)).await,
            Err(Error::NoResponders { .. })
        ));
    }

    #[test]
    fn decoding_names_the_version_or_the_malformation() {
        let env = Envelope {
            header: Header::new(crate::RequestId(7), 3, false),
            body: Step {
                tokens: vec![1, 2],
                text: None,
                finish: None,
                setup: None,
                reported: None,
            },
        };
        let bytes = crate::encode(&env);
        let back: Envelope<Step> = crate::decode("t", &bytes).unwrap();
        assert_eq!(back, env);
        let mut other = bytes.to_vec();
        assert_eq!(other[2], crate::SCHEMA_VERSION as u8);
        other[2] = 9;
        match crate::decode::<Envelope<Step>>("t", &other) {
            Err(Error::Version { got: 9, .. }) => {}
            x => panic!("{x:?}"),
        }
        assert!(matches!(
            crate::decode::<Envelope<Step>>("t", b"\x93xx"),
            Err(Error::Malformed { .. })
        ));
        assert_eq!(redact("nats://u:p@h:1"), "nats://***@h:1");
        assert_eq!(percent_decode("p%40ss%zz"), "p@ss%zz");
    }
}

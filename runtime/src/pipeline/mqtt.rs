//! `--mqtt mqtt://HOST:PORT/TOPIC`: every frame's JSON line published with QoS 1 through
//! [`rumqttc`] (plain TCP; no TLS stack in the binary).
//!
//! Topics, under the run's `TOPIC`: `TOPIC` (each frame's line), `TOPIC/events/enter`,
//! `TOPIC/events/leave`, `TOPIC/events/cross` (one message per event), `TOPIC/counts` (the
//! zone and line counts, **retained**, republished when they change, so a subscriber that
//! connects later gets the current counts at once) and `TOPIC/status` (the periodic status
//! line). Every message is QoS 1.
//!
//! Three parts: the run loop [`MqttSink::publish`]es into a bounded queue (when it is full the
//! oldest message is dropped and counted: fresh results matter more than old ones); a
//! publisher thread moves messages from the queue into rumqttc; a connection thread drives
//! rumqttc's event loop, which reconnects by itself (we wait 0.1 → 5 s between failed
//! attempts) and resends unacknowledged QoS 1 messages. While the broker is away, rumqttc's
//! own request channel fills, the publisher blocks, and our queue drops oldest. At the end
//! [`MqttSink::finish`] waits (bounded) for the queue to drain and the acks to arrive.
//!
//! Each message allocates its payload (rumqttc takes ownership of a `Vec`).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

use crate::analytics::EventKind;
use crate::camera::Backoff;

/// Messages the queue holds before dropping the oldest.
pub const QUEUE: usize = 256;

/// A bad `--mqtt` URL.
#[derive(Debug, thiserror::Error)]
#[error("--mqtt '{url}': {reason}")]
pub struct MqttUrlError {
    url: String,
    reason: &'static str,
}

/// Host, port and topic of an `mqtt://HOST[:PORT]/TOPIC` URL (port 1883 by default).
pub fn parse_url(url: &str) -> Result<(String, u16, String), MqttUrlError> {
    let err = |reason| MqttUrlError {
        url: crate::redact::redact(url).into_owned(),
        reason,
    };
    let rest = url
        .strip_prefix("mqtt://")
        .ok_or_else(|| err("expected mqtt://HOST:PORT/TOPIC (mqtts is not supported)"))?;
    let (authority, topic) = rest.split_once('/').ok_or_else(|| err("no /TOPIC"))?;
    if topic.is_empty() || topic.contains(['+', '#']) {
        return Err(err("the topic must be non-empty and have no wildcards"));
    }
    if authority.contains('@') {
        return Err(err(
            "USER:PASSWORD@ is not supported: the broker must accept anonymous clients",
        ));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, p.parse::<u16>().map_err(|_| err("bad port"))?),
        None => (authority, 1883),
    };
    if host.is_empty() {
        return Err(err("no host"));
    }
    Ok((host.into(), port, topic.into()))
}

/// Which topic under the run's topic a message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// `TOPIC`: a frame's line.
    Frame,
    /// `TOPIC/events/KIND`.
    Event(EventKind),
    /// `TOPIC/counts`, retained.
    Counts,
    /// `TOPIC/status`.
    Status,
}

impl Topic {
    fn index(self) -> usize {
        match self {
            Topic::Frame => 0,
            Topic::Event(EventKind::Enter) => 1,
            Topic::Event(EventKind::Leave) => 2,
            Topic::Event(EventKind::Cross) => 3,
            Topic::Counts => 4,
            Topic::Status => 5,
        }
    }
}

/// The topic names under `base`, by [`Topic`] index.
fn topic_names(base: &str) -> [String; 6] {
    [
        base.to_string(),
        format!("{base}/events/enter"),
        format!("{base}/events/leave"),
        format!("{base}/events/cross"),
        format!("{base}/counts"),
        format!("{base}/status"),
    ]
}

#[derive(Default)]
struct Queue {
    messages: Mutex<VecDeque<(Topic, Vec<u8>)>>,
    cv: Condvar,
    closed: AtomicBool,
    dropped: AtomicU64,
    published: AtomicU64,
    acked: AtomicU64,
}

/// Publishes JSON lines to an MQTT topic.
pub struct MqttSink {
    queue: Arc<Queue>,
    client: Client,
    publisher: Option<JoinHandle<()>>,
    connection: Option<JoinHandle<()>>,
    url: String,
}

impl MqttSink {
    /// Connects (in the background) to the broker of `url`.
    pub fn connect(url: &str) -> Result<MqttSink, MqttUrlError> {
        let (host, port, topic) = parse_url(url)?;
        let mut options = MqttOptions::new(format!("kestrel-{}", std::process::id()), host, port);
        options.set_keep_alive(Duration::from_secs(10));
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut connection) = Client::new(options, 16);
        let queue = Arc::new(Queue::default());
        let q = queue.clone();
        let label = url.to_string();
        let connection = std::thread::Builder::new()
            .name("kestrel-mqtt-conn".into())
            .spawn(move || {
                let mut backoff = Backoff::new();
                let mut connected = false;
                for event in connection.iter() {
                    match event {
                        Ok(Event::Incoming(Packet::ConnAck(_))) => {
                            log::info!("mqtt {label}: connected");
                            connected = true;
                            backoff.reset();
                        }
                        Ok(Event::Incoming(Packet::PubAck(_))) => {
                            q.acked.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            if q.closed.load(Ordering::Relaxed) {
                                break;
                            }
                            if connected {
                                log::warn!("mqtt {label}: connection lost ({e}); reconnecting");
                            } else {
                                log::warn!("mqtt {label}: cannot connect ({e})");
                            }
                            connected = false;
                            std::thread::sleep(backoff.next_delay());
                        }
                    }
                }
            })
            .expect("spawn mqtt thread");
        let q = queue.clone();
        let c = client.clone();
        let topics = topic_names(&topic);
        let publisher = std::thread::Builder::new()
            .name("kestrel-mqtt-pub".into())
            .spawn(move || loop {
                let message = {
                    let mut m = q.messages.lock().unwrap_or_else(|p| p.into_inner());
                    loop {
                        if let Some(msg) = m.pop_front() {
                            break Some(msg);
                        }
                        if q.closed.load(Ordering::Relaxed) {
                            break None;
                        }
                        m = q.cv.wait(m).unwrap_or_else(|p| p.into_inner());
                    }
                };
                let Some((to, message)) = message else { return };
                let retain = to == Topic::Counts;
                if c.publish(
                    topics[to.index()].as_str(),
                    QoS::AtLeastOnce,
                    retain,
                    message,
                )
                .is_err()
                {
                    return;
                }
                q.published.fetch_add(1, Ordering::Relaxed);
            })
            .expect("spawn mqtt thread");
        Ok(MqttSink {
            queue,
            client,
            publisher: Some(publisher),
            connection: Some(connection),
            url: url.into(),
        })
    }

    /// Queues one frame line; drops the oldest message when the queue is full.
    pub fn publish(&mut self, payload: &[u8]) {
        self.publish_to(Topic::Frame, payload)
    }

    /// Queues one message to `topic`; drops the oldest message when the queue is full.
    pub fn publish_to(&mut self, topic: Topic, payload: &[u8]) {
        let mut m = self
            .queue
            .messages
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if m.len() >= QUEUE {
            m.pop_front();
            self.queue.dropped.fetch_add(1, Ordering::Relaxed);
        }
        m.push_back((topic, payload.to_vec()));
        drop(m);
        self.queue.cv.notify_one();
    }

    /// Messages dropped so far.
    pub fn dropped(&self) -> u64 {
        self.queue.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for every queued message to be published and acknowledged, then
    /// disconnects. Messages still unacknowledged count as dropped.
    pub fn finish(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let q = &self.queue;
        let pending = || {
            let queued = q.messages.lock().map(|m| m.len()).unwrap_or(0) as u64;
            queued + q.published.load(Ordering::Relaxed)
                - q.acked
                    .load(Ordering::Relaxed)
                    .min(q.published.load(Ordering::Relaxed))
        };
        while pending() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let left = pending();
        if left > 0 {
            log::warn!(
                "mqtt {}: {left} message(s) not acknowledged at exit",
                self.url
            );
            q.dropped.fetch_add(left, Ordering::Relaxed);
        }
        q.closed.store(true, Ordering::Relaxed);
        q.cv.notify_all();
        let _ = self.client.disconnect();
        for handle in [self.publisher.take(), self.connection.take()]
            .into_iter()
            .flatten()
        {
            let until = Instant::now() + Duration::from_millis(500);
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("mqtt://127.0.0.1:1884/kestrel/cam0").unwrap(),
            ("127.0.0.1".into(), 1884, "kestrel/cam0".into())
        );
        assert_eq!(parse_url("mqtt://broker/t").unwrap().1, 1883);
        for bad in [
            "http://x/t",
            "mqtt://x",
            "mqtt://x/",
            "mqtt://:1/t",
            "mqtt://x:port/t",
            "mqtt://x/a/#",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest() {
        // Nothing listens on this port: messages pile up and the oldest go.
        let mut sink = MqttSink::connect("mqtt://127.0.0.1:9/t").unwrap();
        for i in 0..(QUEUE + 40) {
            sink.publish(format!("{i}").as_bytes());
        }
        // The publisher thread may have moved a few into rumqttc's channel; the rest are
        // dropped oldest-first.
        assert!(sink.dropped() >= 40 - 17, "{}", sink.dropped());
        let front = sink
            .queue
            .messages
            .lock()
            .unwrap()
            .back()
            .map(|m| m.1.clone());
        assert_eq!(front.as_deref(), Some(format!("{}", QUEUE + 39).as_bytes()));
        sink.finish(Duration::from_millis(50));
        assert!(sink.dropped() >= 40);
    }
}

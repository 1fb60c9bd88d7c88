//! A real `mosquitto` broker on 127.0.0.1 for the MQTT tests, and subscribers to it.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};

pub struct Broker {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_broker(port: u16) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .unwrap();
    let child = spawn_mosquitto(&conf, &[port]);
    Broker { child, _dir: dir }
}

/// Starts `mosquitto -c conf` and waits (up to 10 s) until it listens on every port of `ports`
/// on 127.0.0.1.
pub fn spawn_mosquitto(conf: &std::path::Path, ports: &[u16]) -> Child {
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mosquitto");
    let started = Instant::now();
    for &port in ports {
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    child
}

/// Subscribes to `topic` (wildcards allowed); every message arrives on the returned channel as
/// (topic, retained, payload). Returns once the subscription is acknowledged.
pub fn subscribe_topics(port: u16, topic: &str) -> mpsc::Receiver<(String, bool, Vec<u8>)> {
    // Client ids must be unique: a second client with the same id takes the session over.
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("test-sub-{}-{n}", std::process::id());
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut connection) = Client::new(options, 10);
    client.subscribe(topic, QoS::AtLeastOnce).unwrap();
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _client = client;
        for event in connection.iter() {
            match event {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx
                        .send((p.topic.clone(), p.retain, p.payload.to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("subscribed");
    rx
}

/// Subscribes to `topic`; every message payload arrives on the returned channel. Returns once
/// the subscription is acknowledged.
pub fn subscribe(port: u16, topic: &str) -> mpsc::Receiver<Vec<u8>> {
    let all = subscribe_topics(port, topic);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for (_, _, payload) in all {
            if tx.send(payload).is_err() {
                return;
            }
        }
    });
    rx
}

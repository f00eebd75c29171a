//! Drives one `dht::Node` by hand, as a driver would: a put and a get on a node alone.
//!
//! Run with `cargo run -p reef-dht --example single_node`.

use std::time::{Duration, Instant};

use dht::{Config, Contact, Event, Key, Node, NodeId, Value};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let me = Contact::new(NodeId::hash(b"me"), vec![1]);
    let mut node = Node::new(Config::default(), me)?;
    // The driver reads the clock; the node only ever receives `now`.
    let now = Instant::now();
    let key = Key::from_url("http://www.example.com/");
    // A value names a proxy holding the object; a get finds holders other than the node
    // itself, so this one names another proxy.
    let other = Contact::new(NodeId::hash(b"other"), vec![2]);
    let value = Value {
        holder: other.clone(),
        pending: false,
    };
    node.put(now, key, value, Duration::from_secs(60));
    node.get(now, key);
    // Alone, nothing goes on the wire.
    assert!(node.poll_transmit().is_none());
    while let Some(event) = node.poll_event() {
        match event {
            Event::PutDone { result, .. } => println!("put: {result:?}"),
            Event::GetDone { result, .. } => {
                let found = result?;
                assert_eq!(found.values[0].holder, other);
                println!(
                    "get: found at level {} after {} hops",
                    found.level.0, found.hops
                );
            }
            other => println!("{other:?}"),
        }
    }
    Ok(())
}

//! What `cargo run` promises on a fresh clone: with no flags, `cairn` serves a single-node
//! cluster on 127.0.0.1:7700 with data under ./data, and keeps acknowledged writes across a
//! restart.

#![cfg(not(madsim))]

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use cairn_http::client::Route;
use cairn_node::api::Consistency;
use support::{client, eventually};

/// Goal: the README's first command works as written. Method: start the binary without
/// arguments in an empty directory, write, SIGKILL it, start it again and read the write back.
#[tokio::test]
async fn no_flags_serve_a_single_node_on_7700_with_data_under_dot_data() {
    let cwd = tempfile::tempdir().expect("a temporary directory");
    let start = || {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .current_dir(cwd.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the cairn binary starts")
    };
    let cluster = client(vec!["127.0.0.1:7700".to_string()]);
    let mut first = start();
    eventually(Duration::from_secs(30), "the default node to accept a write", || async {
        cluster.put(Route::Any, "greeting", Bytes::from("hello"), None).await.ok()
    })
    .await;
    assert!(cwd.path().join("data").is_dir(), "data lives under ./data");
    let mut banner = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(first.stdout.take().expect("piped")), &mut banner)
        .expect("the node prints where it listens");
    assert!(banner.contains("http://127.0.0.1:7700") && banner.contains("127.0.0.1:7701"), "banner: {banner}");
    first.kill().expect("SIGKILL");
    first.wait().expect("reaped");

    let mut second = start();
    let read = eventually(Duration::from_secs(30), "the restarted node to serve the write", || async {
        cluster.get(Route::Any, "greeting", Consistency::Linearizable).await.ok()
    })
    .await;
    second.kill().expect("SIGKILL");
    second.wait().expect("reaped");
    assert_eq!(read.value.map(|record| record.value), Some("hello".to_string()));
}
